"""SALRecord: the SAL arrays of one run, saved in its directory as ``sal.npz`` (arrays) + ``sal.json`` (meta).

sal.npz   epochs (E,) measured epochs, 0-based; l0, seconds (E,); sal, s_max, s_min (E, L);
          loss_max, loss_min, ratio_max, ratio_min (E, R, L)  — see :class:`pst_fast.metrics.sal.SALResult`
sal.json  layers, the SAL matrix again (rounded), the resolved SAL config, and what UD compares: model,
          training epochs, data, dataset fingerprint, poisoned flag, seed, defense

Both files are written atomically; ``np.load`` never unpickles. :class:`SALRecorder` is the trainer hook of
``train --sal`` that fills a run's record after the epochs its SAL config selects.
"""
from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..data import Split
from ..errors import PstFastError
from ..io import atomic_write, atomic_write_json
from .plot import plot_sal
from .sal import SALConfig, make_sal_data, reference_loss, sal_epoch

ARRAYS = ("l0", "seconds", "sal", "s_max", "s_min", "loss_max", "loss_min", "ratio_max", "ratio_min")


@dataclasses.dataclass
class SALRecord:
    layers: list[str]
    meta: dict
    epochs: list[int] = dataclasses.field(default_factory=list)
    arrays: dict[str, list] = dataclasses.field(default_factory=lambda: {k: [] for k in ARRAYS})

    def add(self, epoch: int, result) -> None:
        """Append one epoch's :class:`SALResult` (replacing that epoch and any later one, as after a resume)."""
        self.truncate(epoch)
        self.layers = self.layers or list(result.layers)
        if result.layers != self.layers:
            raise PstFastError(f"SAL layers changed within a run: {len(result.layers)} vs {len(self.layers)}")
        self.epochs.append(epoch)
        for k in ARRAYS:
            self.arrays[k].append(np.asarray(getattr(result, k), dtype=np.float32))

    def truncate(self, epoch: int) -> None:
        """Drop the entries of ``epoch`` and later."""
        keep = [i for i, e in enumerate(self.epochs) if e < epoch]
        self.epochs = [self.epochs[i] for i in keep]
        self.arrays = {k: [v[i] for i in keep] for k, v in self.arrays.items()}

    def matrix(self, name: str = "sal") -> np.ndarray:
        """(E, L) (or (E, R, L)) stacked array ``name`` over the measured epochs."""
        return np.stack(self.arrays[name]) if self.epochs else np.zeros((0, len(self.layers)), np.float32)

    def save(self, directory: str | Path) -> None:
        d = Path(directory)
        buf = io.BytesIO()
        np.savez(buf, epochs=np.asarray(self.epochs, dtype=np.int64), **{k: self.matrix(k) for k in ARRAYS})
        atomic_write(d / "sal.npz", lambda tmp: Path(tmp).write_bytes(buf.getvalue()))
        atomic_write_json(d / "sal.json", {"layers": self.layers, **self.meta, "epochs_measured": self.epochs,
                                           "sal": [[round(float(v), 6) for v in row] for row in self.arrays["sal"]]})

    @classmethod
    def load(cls, directory: str | Path) -> "SALRecord":
        d = Path(directory)
        if not (d / "sal.npz").is_file() or not (d / "sal.json").is_file():
            raise PstFastError(f"{d}: no SAL record (sal.npz + sal.json); train with --sal or run 'pst-fast sal {d}'")
        try:
            meta = json.loads((d / "sal.json").read_text())
            with np.load(d / "sal.npz", allow_pickle=False) as z:
                epochs = [int(e) for e in z["epochs"]]
                arrays = {k: list(z[k]) for k in ARRAYS}
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
            raise PstFastError(f"{d}/sal.npz: not a readable SAL record ({type(e).__name__}: {str(e)[:100]})") from None
        layers = meta.pop("layers")
        meta.pop("epochs_measured", None)
        meta.pop("sal", None)
        return cls(layers, meta, epochs, arrays)


def record_meta(scfg: SALConfig, tcfg, train_ds: Split) -> dict:
    """What a SAL record states about its run (UD refuses to compare runs that differ in it)."""
    return {"sal_config": dataclasses.asdict(scfg), "model": tcfg.model, "train_epochs": tcfg.epochs, "data": tcfg.data,
            "data_fingerprint": train_ds.fingerprint, "poisoned": train_ds.is_poisoned, "seed": tcfg.seed, "defense": tcfg.defense,
            "defense_args": tcfg.defense_args}


class SALRecorder:
    """Trainer epoch-end hook: measures SAL after the epochs ``scfg`` selects and saves the record in ``out``."""

    def __init__(self, scfg: SALConfig, tcfg, train_ds: Split, test_ds: Split, out, start_epoch: int, **loader_kw):
        self.scfg, self.tcfg, self.train_ds, self.test_ds, self.out, self.loader_kw = scfg, tcfg, train_ds, test_ds, out, loader_kw
        meta = record_meta(scfg, tcfg, train_ds)
        self.record = SALRecord.load(out) if out is not None and (out / "sal.npz").is_file() else None
        if self.record is not None and self.record.meta != meta:
            raise PstFastError(f"{out}/sal.json: was measured with other SAL settings; choose another --out")
        if self.record is not None:
            self.record.truncate(start_epoch)
        self.meta = meta

    def __call__(self, state) -> None:
        if not self.scfg.measures(state.epoch, self.tcfg.epochs):
            return
        data = make_sal_data(self.scfg, self.tcfg, self.train_ds, self.test_ds, state.epoch, **self.loader_kw)
        l0, smoothing = reference_loss(self.scfg, self.tcfg, state.log)
        with tqdm(total=self.scfg.rounds, desc=f"SAL ({self.scfg.mode}) after epoch {state.epoch + 1}", leave=False,
                  disable=self.tcfg.quiet, unit="round") as bar:
            res = sal_epoch(state.model, data, self.scfg, l0, smoothing, progress=lambda k, r: bar.update(1))
        if self.record is None:
            self.record = SALRecord([], self.meta)
        self.record.add(state.epoch, res)
        state.log["sal"] = [round(float(v), 6) for v in res.sal]
        state.log["sal_seconds"] = res.seconds
        if self.out is not None:
            self.record.save(self.out)
            plot_sal(self.record, self.out / "sal.png")
