"""Training-time defenses, by name: each maps a TrainConfig to the Hooks it adds to the training loop.

``DEFENSE_PARAMS`` names the parameter dataclass of the defenses that take ``--defense-args``.
"""
from __future__ import annotations

from typing import Callable

from ..errors import PstFastError
from ..training.hooks import Hooks
from .baselines import BASELINES
from .pst import PSTJpegParams, PSTParams, pst_hooks, pst_jpeg_hooks


def standard(cfg) -> Hooks:
    """Plain training: cross-entropy with the run's label smoothing, crop + flip."""
    return Hooks()


DEFENSES: dict[str, Callable] = {"standard": standard, "pst": pst_hooks, "pst-jpeg": pst_jpeg_hooks} | {k: build for k, (build, _) in BASELINES.items()}
DEFENSE_PARAMS: dict[str, type] = {"pst": PSTParams, "pst-jpeg": PSTJpegParams} | {k: params for k, (_, params) in BASELINES.items() if params}


def defense_hooks(name: str, cfg) -> Hooks:
    if name not in DEFENSES:
        raise PstFastError(f"--defense {name!r}: unknown defense; expected one of {', '.join(sorted(DEFENSES))}")
    if cfg.defense_args and name not in DEFENSE_PARAMS:
        raise PstFastError(f"--defense-args {cfg.defense_args!r}: defense {name!r} takes no arguments")
    return DEFENSES[name](cfg)
