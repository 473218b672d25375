"""Training-time defenses, by name: each maps a TrainConfig and its typed parameters to the Hooks it adds to the loop.

``DEFENSE_PARAMS`` names the parameter dataclass of the defenses that take ``--defense-args``; :func:`defense_params`
parses those arguments once, where a run is assembled (``pst_fast.run``), and :func:`defense_hooks` builds the hooks.
"""
from __future__ import annotations

from typing import Callable

from ..errors import PstFastError
from ..options import parse_kv_args
from ..training.hooks import Hooks
from .baselines import BASELINES
from .pst import PSTJpegParams, PSTParams, pst_hooks, pst_jpeg_hooks


def standard(cfg, params: None) -> Hooks:
    """Plain training: cross-entropy with the run's label smoothing, crop + flip."""
    return Hooks()


DEFENSES: dict[str, Callable] = {"standard": standard, "pst": pst_hooks, "pst-jpeg": pst_jpeg_hooks} | {k: build for k, (build, _) in BASELINES.items()}
DEFENSE_PARAMS: dict[str, type] = {"pst": PSTParams, "pst-jpeg": PSTJpegParams} | {k: params for k, (_, params) in BASELINES.items() if params}


def defense_params(name: str, args: str):
    """The typed parameters of defense ``name`` from its ``key=value,...`` ``args`` (None for a defense that takes none)."""
    if name not in DEFENSES:
        raise PstFastError(f"--defense {name!r}: unknown defense; expected one of {', '.join(sorted(DEFENSES))}")
    if name not in DEFENSE_PARAMS:
        if args:
            raise PstFastError(f"--defense-args {args!r}: defense {name!r} takes no arguments")
        return None
    return parse_kv_args(args, DEFENSE_PARAMS[name])


def defense_hooks(name: str, params, cfg) -> Hooks:
    """The hooks of defense ``name`` with its typed ``params`` (from :func:`defense_params`) for the run ``cfg``."""
    return DEFENSES[name](cfg, params)
