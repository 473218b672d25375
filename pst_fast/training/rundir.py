"""The run directory: everything a training run records, and resuming a killed run.

    config.json     the fully resolved TrainConfig (plus package/torch versions)
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
from ..io import atomic_torch_save, atomic_write_json, atomic_write_text
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

    def open(self) -> None:
        """Create the directory, or check that an existing one holds this same run."""
        if self.path is None:
            return
        cfg_file = self.file("config.json")
        if cfg_file.is_file():
            try:
                old = json.loads(cfg_file.read_text())["train"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise PstFastError(f"{cfg_file}: not a pst_fast run config; choose another --out") from None
            new = self.cfg.identity()
            diff = sorted(k for k in set(old) | set(new) if k not in TrainConfig.VOLATILE and old.get(k) != new.get(k))
            if diff:
                raise PstFastError(f"--out {self.path}: holds a different run (differs in {', '.join(diff)}); choose another --out")
        elif self.path.exists() and any(self.path.iterdir()):
            raise PstFastError(f"--out {self.path}: exists and is not a pst_fast run directory; choose another --out")
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            from .. import __version__

            atomic_write_json(cfg_file, {"train": self.cfg.to_dict(), "pst_fast": __version__, "torch": torch.__version__})

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
