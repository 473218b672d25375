"""The run directory: everything a training run records, and resuming a killed run.

    config.json     the fully resolved TrainConfig (plus package/torch versions)
    data.json       the data trained on: classes, image counts, fingerprint, images skipped as unreadable
    metrics.jsonl   one JSON line per epoch
    checkpoint.pt   latest epoch: model + optimizer state (tensors and plain containers only)
    epochs/NNNN.pt  with --keep-checkpoints: the weights after each epoch (NNNN = epoch, 0-based)
    sal.npz, sal.json, sal.png   with --sal: per-layer SAL of the measured epochs (pst_fast.metrics.record)
    model.pt        final weights (state_dict), loadable with ``torch.load(weights_only=True)``
    curves.png      loss / accuracy plot
    summary.json    written last; its presence means the run finished
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import PstFastError
from ..io import atomic_torch_save, atomic_write_json, atomic_write_text, check_out
from .config import TrainConfig


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint or weights file, read with ``weights_only=True`` (no arbitrary unpickling)."""
    p = Path(path)
    if not p.is_file():
        raise PstFastError(f"{p}: no such checkpoint file")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupted, truncated or not a torch file
        raise PstFastError(f"{p}: not a readable checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None


class RunDir:
    """Files of one run under ``path`` (None: a run that records nothing)."""

    def __init__(self, path: str | None, cfg: TrainConfig):
        self.path = Path(path) if path else None
        self.cfg = cfg

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def finished(self) -> bool:
        return self.path is not None and self.file("summary.json").is_file()

    def check(self, identity) -> None:
        """Before any work, without writing anything: ``--out`` is (or can become) a directory, and an existing one holds
        this same run or nothing (``identity(cfg)``: the options that name a run's computation, :func:`pst_fast.run.identity`)."""
        if self.path is None:
            return
        if not self.finished:  # a finished run is only read
            check_out(self.path, new=False)
        cfg_file = self.file("config.json")
        if cfg_file.is_file():
            try:
                old = identity(TrainConfig.from_dict(json.loads(cfg_file.read_text())["train"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise PstFastError(f"{cfg_file}: not a pst_fast run config; choose another --out") from None
            new = identity(self.cfg)
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            if diff:
                raise PstFastError(f"--out {self.path}: holds a different run (differs in {', '.join(diff)}); choose another --out")
        elif self.path.exists() and any(self.path.iterdir()):
            raise PstFastError(f"--out {self.path}: exists and is not a pst_fast run directory; choose another --out")

    def create(self, train_ds, test_ds) -> None:
        """After every check has passed: the directory with config.json and data.json (the data's classes, image counts,
        fingerprint and skipped images), unless a resumed run has them."""
        if self.path is None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        if not self.file("config.json").is_file():
            from .. import __version__

            atomic_write_json(self.file("config.json"), {"train": self.cfg.to_dict(), "pst_fast": __version__, "torch": torch.__version__})
        if not self.file("data.json").is_file():
            skipped = {"skipped": {"train": train_ds.skipped, "test": test_ds.skipped}}
            atomic_write_json(self.file("data.json"), self._data(train_ds, test_ds) | skipped)

    @staticmethod
    def _data(train_ds, test_ds) -> dict:
        return {"classes": train_ds.classes, "train": len(train_ds), "test": len(test_ds), "fingerprint": train_ds.fingerprint}

    def check_data(self, train_ds, test_ds) -> None:
        """Check a resumed run's data against its data.json (a new run records it in :meth:`create`)."""
        if self.path is None or not self.file("data.json").is_file():
            return
        new = self._data(train_ds, test_ds)
        f = self.file("data.json")
        old = json.loads(f.read_text())
        gone, added = sorted(set(old["classes"]) - set(new["classes"])), sorted(set(new["classes"]) - set(old["classes"]))
        diff = ([f"classes gone: {', '.join(gone)}"] if gone else []) + ([f"new classes: {', '.join(added)}"] if added else [])
        diff += [f"{s} images {old[s]} -> {new[s]}" for s in ("train", "test") if old[s] != new[s]]
        if not diff and old["fingerprint"] != new["fingerprint"]:
            diff = ["the files changed"]
        if diff:
            raise PstFastError(f"--data {self.cfg.data}: not the data this run started with ({'; '.join(diff)}; recorded in {f}); "
                               "restore it or choose another --out")

    def resume_point(self) -> tuple[int, dict | None]:
        """(first epoch to run, checkpoint or None); drops metric lines of epochs the checkpoint does not cover."""
        if self.path is None or not self.file("checkpoint.pt").is_file():
            if self.path is not None and self.file("metrics.jsonl").exists():
                self.file("metrics.jsonl").unlink()
            return 0, None
        ckpt = load_checkpoint(self.file("checkpoint.pt"))
        start = int(ckpt["epoch"]) + 1
        lines = [l for l in self.metrics() if l["epoch"] < start]
        atomic_write_text(self.file("metrics.jsonl"), "".join(json.dumps(l) + "\n" for l in lines))
        return start, ckpt

    def epoch_weights(self, epoch: int) -> Path:
        return self.file("epochs") / f"{epoch:04d}.pt"

    def metrics(self) -> list[dict]:
        if self.path is None or not self.file("metrics.jsonl").is_file():
            return []
        return [json.loads(l) for l in self.file("metrics.jsonl").read_text().splitlines() if l.strip()]

    def save_epoch(self, line: dict, checkpoint: dict, keep: bool = False) -> None:
        """Record one finished epoch: checkpoint first (and with ``keep`` the epoch's weights), then its metrics line (all atomic)."""
        if self.path is None:
            return
        if keep:
            atomic_torch_save({k: v.detach().cpu() for k, v in checkpoint["model"].items()}, self.epoch_weights(line["epoch"]))
        atomic_torch_save(checkpoint, self.file("checkpoint.pt"))
        lines = [l for l in self.metrics() if l["epoch"] < line["epoch"]] + [line]
        atomic_write_text(self.file("metrics.jsonl"), "".join(json.dumps(l) + "\n" for l in lines))

    def finish(self, model: torch.nn.Module, summary: dict) -> None:
        if self.path is None:
            return
        atomic_torch_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, self.file("model.pt"))
        atomic_write_json(self.file("summary.json"), summary)

    def summary(self) -> dict:
        return json.loads(self.file("summary.json").read_text())
