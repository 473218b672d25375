"""What every attack shares: its spec (name, norm, budget, defaults), quantization to published uint8
images, and writing the poison as a dataset directory (``train/`` poisoned, ``test/`` clean).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..data.format import ImageDataset, write_poison
from ..errors import PstFastError
from ..options import coerce


@dataclass
class AttackSpec:
    """A registered attack: ``generate(train, params, device, progress) -> Poison`` plus its parameter dataclass; ``tree``
    generates δ for an ImageFolder tree when the attack supports one."""

    name: str
    generate: Callable
    params: type
    norm: str            # 'linf', 'l2', 'l0' (pixels) or 'none' (not an additive bounded perturbation)
    summary: str
    reference: str
    tree: Callable | None = None  # tree(split, image_size, params, seed, device, progress) -> (int8 δ, info) on an ImageFolder split
    fidelity: str = ""            # which defaults follow the official code (repository @ commit read) and which options do not

    def budget(self, params) -> float | None:
        return getattr(params, "eps", None)


@dataclass
class Poison:
    """Poisoned training images as published (uint8 N×H×W×C) and, when it fits, the int8 δ (per sample or per class)."""

    images: np.ndarray
    delta: np.ndarray | None = None
    info: dict = field(default_factory=dict)   # what the generator wants recorded (rounds, surrogate accuracy, ...)


def params_from(spec: AttackSpec, overrides: dict):
    """The attack's parameter dataclass with ``overrides`` applied by :func:`pst_fast.options.coerce` (errors name
    ``attack NAME: parameter KEY``), then its budget checked against the norm."""
    p = coerce(spec.params, overrides, f"attack {spec.name}: parameter")
    eps = getattr(p, "eps", None)
    if eps is not None and spec.norm == "linf" and not 0 < eps <= 1:
        raise PstFastError(f"attack {spec.name}: eps={eps} must lie in (0, 1] (pixel units; 8/255 = {8 / 255:.5f})")
    if eps is not None and eps <= 0:
        raise PstFastError(f"attack {spec.name}: eps={eps} must be positive")
    return p


def save_poison(out: str | Path, spec: AttackSpec, params, seed: int, train: ImageDataset, test: ImageDataset, poison: Poison) -> Path:
    """Write ``out/train`` (poisoned, with δ and full meta) and ``out/test`` (the clean test split) atomically."""
    if poison.images.shape != train.images.shape or poison.images.dtype != np.uint8:
        raise PstFastError(f"attack {spec.name}: produced {poison.images.dtype} {poison.images.shape}, expected uint8 {train.images.shape}")
    meta = {
        "name": f"{train.meta['name']}-{spec.name}",
        "source": f"pst_fast.attacks.{spec.name}",
        "attack": spec.name,
        "params": dataclasses.asdict(params),
        "norm": spec.norm,
        "budget": spec.budget(params),
        "seed": seed,
        "reference": spec.reference,
        **({"generation": poison.info} if poison.info else {}),
    }
    return write_poison(out, train, test, poison.images, poison.delta, meta)
