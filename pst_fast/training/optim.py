"""Optimizer, parameter groups (one per model block) and the learning-rate schedule of the trainer."""
from __future__ import annotations

import math

import torch

from ..errors import PstFastError
from .freeze import FreezeAwareAdamW, FreezeAwareSGD, block_groups

DEFAULT_LR = {"sgd": 0.1, "adamw": 1e-3}


def resolve_optimizer(cfg) -> tuple[str, float]:
    """(optimizer name, peak lr) after resolving 'auto' and lr=0."""
    name = cfg.optimizer
    if name == "auto":
        name = "adamw" if cfg.model.startswith("vit") else "sgd"
    return name, cfg.lr or DEFAULT_LR[name]


def block_param_groups(model, cfg) -> list[dict]:
    """One group per block of ``model.blocks``, shallow to deep; ``lr_scale`` multiplies the scheduled lr of a group."""
    return [dict(g, lr_scale=1.0) for g in block_groups(model.blocks)]


def make_optimizer(groups: list[dict], cfg) -> torch.optim.Optimizer:
    """The trainer's optimizer: freeze-aware SGD (nesterov unless ``cfg.nesterov`` is off) or AdamW over ``groups``
    (numerically torch's own)."""
    name, lr = resolve_optimizer(cfg)
    if name == "sgd":
        return FreezeAwareSGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                              weight_decay=cfg.weight_decay)
    if name == "adamw":
        return FreezeAwareAdamW(groups, lr=lr, weight_decay=cfg.weight_decay)
    raise PstFastError(f"--optimizer {name!r}: expected sgd or adamw")


def lr_factor(cfg, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Multiplier in [0, 1] of the peak lr at optimizer step ``step`` (0-based): linear warm-up, then the schedule."""
    warm = int(round(cfg.warmup_epochs * steps_per_epoch))
    if cfg.schedule == "onecycle":  # linear up for warm-up steps, linear down to 0 at the end
        warm = max(warm, 1)
        return (step + 1) / warm if step < warm else max(0.0, (total_steps - step) / max(1, total_steps - warm))
    if cfg.schedule == "triangle":  # airbench: 0.2 -> 1 over the warm-up, then down to 0.07 at the last step
        if step < warm:
            return 0.2 + 0.8 * step / warm
        return 1.0 - 0.93 * (step - warm) / max(1, total_steps - warm)
    if step < warm:
        return (step + 1) / warm
    if cfg.schedule == "constant":
        return 1.0
    progress = (step - warm) / max(1, total_steps - warm)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def freeze_first_block_after(epochs: int):
    """``on_epoch_end`` hook: once ``epochs`` epochs are done, freezes the optimizer group of the model's first block
    (airbench94's whitening bias after 3 epochs). The frozen flag lives in the optimizer's state, so a resumed run
    keeps it."""
    def hook(state) -> None:
        if state.epoch + 1 == epochs:
            if not hasattr(state.optimizer, "freeze"):
                raise PstFastError(f"--stem-epochs {epochs}: the optimizer {type(state.optimizer).__name__} cannot freeze a "
                                   "parameter group (expected a pst_fast.training.freeze optimizer)")
            state.optimizer.freeze(next(iter(state.model.blocks)))
    return hook
