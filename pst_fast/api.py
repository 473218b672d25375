"""The one-call public functions — ``pst_fast.poison``, ``pst_fast.pst``, ``pst_fast.sal``, ``pst_fast.ud`` (and
``pst_fast.train``, the trainer itself) — with the CLI's defaults. Each returns what the matching command prints.

    pst_fast.poison("lsp", "cifar10-mini", out="poisons/lsp")            # -> summary dict
    pst_fast.train(data="poisons/lsp", epochs=15, out="runs/lsp", sal="fast")
    pst_fast.pst(data="poisons/lsp", epochs=15, out="runs/lsp-pst", threshold=0.3)
    pst_fast.sal("runs/clean")                                           # a run trained with keep_checkpoints=True
    pst_fast.ud("runs/clean", ["runs/lsp"])                              # -> {"beta", "runs": [{"run", "lp", "ud"}]}
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from .errors import PstFastError


def poison(attack: str, data: str = "cifar10-mini", out: str | None = None, seed: int = 0, device: str = "auto",
           progress: bool = True, **params) -> dict:
    """Generate ``attack`` (``pst-fast attacks`` lists them; ``params`` are its parameters) on the training split of
    ``data`` and write the poisoned dataset to ``out`` (canonical format, clean test split included)."""
    from .attacks import poison as generate
    from .device import resolve_device

    return generate(attack, data, out, seed=seed, device=str(resolve_device(device)), progress=progress, **params)


def pst(data: str = "cifar10-mini", out: str = "", **options) -> dict:
    """Train with Progressive Staged Training. ``options`` are training options (``pst_fast.TrainConfig`` fields) or
    PST parameters (``pst-fast defenses``: detector, threshold, rollback, ...); returns the run's summary."""
    from .defenses.pst import PSTParams
    from .run import train
    from .training import TrainConfig

    pst_keys = {f.name for f in dataclasses.fields(PSTParams)}
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)} - {"defense", "defense_args"}
    unknown = set(options) - pst_keys - train_keys
    if unknown:
        raise PstFastError(f"pst(): unknown option(s) {', '.join(sorted(unknown))}; expected TrainConfig fields or PST parameters "
                           f"({', '.join(sorted(pst_keys))})")
    args = ",".join(f"{k}={v}" for k, v in sorted(options.items()) if k in pst_keys)
    return train(data=data, out=out, defense="pst", defense_args=args, **{k: v for k, v in options.items() if k in train_keys})


def sal(run: str | Path, mode: str = "fast", out: str | Path | None = None, device: str = "auto", quiet: bool = True, **knobs):
    """Per-layer SAL of a finished run from its kept per-epoch weights (``keep_checkpoints=True``); ``knobs`` are the
    SAL knobs (``pst-fast sal --help``: rounds, subset, every, ...). Returns the SALRecord (also saved to ``out``,
    default the run directory)."""
    from .metrics.sal import parse_sal_config
    from .run import measure_sal

    return measure_sal(run, parse_sal_config(mode, ",".join(f"{k}={v}" for k, v in knobs.items())), out, device, quiet)


def ud(clean: str | Path | list, poisoned: str | Path | list, reference: str = "same-defense") -> dict:
    """Unlearnable distance of ``poisoned`` run(s) against the ``clean`` run(s), from their SAL records: each run against
    the clean run of its own defense (``reference="same-defense"``, official) or of standard training (``"standard"``):
    ``{"beta": β, "runs": [{"run", "clean", "lp", "ud", ...}]}`` (UD ≈ 1 for another clean run, lower = less learnable)."""
    from .metrics.ud import unlearnable_distance

    return unlearnable_distance(clean, list(poisoned) if isinstance(poisoned, (list, tuple)) else [poisoned], reference)
