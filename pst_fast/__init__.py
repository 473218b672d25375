"""pst_fast: a compiled, high-performance engine for research on unlearnable examples.

Public API (imported lazily so that ``import pst_fast`` stays cheap; docs/api.md):
one-call functions ``poison``, ``train``, ``pst``, ``sal``, ``ud``; ``TrainConfig``, ``Hooks``; the model registry
``create_model`` / ``list_models``; ``DeviceLoader``; the freeze-aware optimizers ``FreezeAwareSGD`` /
``FreezeAwareAdamW``; and the modules ``data``, ``ops`` (custom ops), ``models``, ``training``, ``defenses``,
``attacks``, ``metrics``, ``backend``.

From a source checkout, ``pst_fast.kernels`` and ``pst_fast.benchmarks`` are its top-level ``kernels/`` and
``benchmarks/`` (:mod:`pst_fast.checkout`).
"""
from __future__ import annotations

import importlib

from . import checkout

checkout.install()

__version__ = "0.1.0"

_LAZY = {
    "poison": ("pst_fast.api", "poison"),
    "pst": ("pst_fast.api", "pst"),
    "sal": ("pst_fast.api", "sal"),
    "ud": ("pst_fast.api", "ud"),
    "train": ("pst_fast.run", "train"),
    "TrainConfig": ("pst_fast.training", "TrainConfig"),
    "Hooks": ("pst_fast.training", "Hooks"),
    "create_model": ("pst_fast.models", "create_model"),
    "list_models": ("pst_fast.models", "list_models"),
    "DeviceLoader": ("pst_fast.data.loader", "DeviceLoader"),
    "FreezeAwareSGD": ("pst_fast.training.freeze", "FreezeAwareSGD"),
    "FreezeAwareAdamW": ("pst_fast.training.freeze", "FreezeAwareAdamW"),
    "PstFastError": ("pst_fast.errors", "PstFastError"),
}


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    if name in ("data", "ops", "models", "training", "defenses", "attacks", "metrics", "backend"):
        return importlib.import_module(f"pst_fast.{name}")
    raise AttributeError(f"module 'pst_fast' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
