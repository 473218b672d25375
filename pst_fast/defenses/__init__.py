"""Training-time defenses, by name: each maps a TrainConfig to the Hooks it adds to the training loop."""
from __future__ import annotations

from typing import Callable

from ..errors import PstFastError
from ..training.hooks import Hooks
from .pst import pst_hooks

DEFENSES: dict[str, Callable] = {"standard": lambda cfg: Hooks(), "pst": pst_hooks}


def defense_hooks(name: str, cfg) -> Hooks:
    if name not in DEFENSES:
        raise PstFastError(f"--defense {name!r}: unknown defense; expected one of {', '.join(sorted(DEFENSES))}")
    return DEFENSES[name](cfg)
