"""Extension points of the training loop; later features plug in here without editing the loop.

- ``param_groups(model, cfg) -> list[dict]``: optimizer parameter groups (e.g. per block, for freezing).
- ``make_optimizer(groups, cfg) -> Optimizer``: replaces the default SGD/AdamW (e.g. a freeze-aware one).
- ``loss(model, x, y, state) -> Tensor``: replaces ``cross_entropy(model(x), y)`` (augmentation defenses,
  adversarial training, staged losses). Must return the mean loss; may set ``state.logits`` for accuracy.
- ``prepare_train(dataset) -> dataset``: once, before training: replaces the training split (e.g. ISS
  compression of every image); must keep its length, labels and uint8 (N, H, W, C) images.
- ``on_step(state)``: after every optimizer step.
- ``on_epoch_end(state)``: after evaluation; may add fields to ``state.log`` (written to metrics.jsonl)
  and may set ``state.stop = True``.
- ``stateful``: name -> object with ``state_dict()`` / ``load_state_dict(d)``: saved in the run's checkpoint with the
  model and optimizer after every epoch, and handed back before a resumed run's first step (e.g. PST's stages).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..data.normalization import Normalization


@dataclass
class TrainState:
    """What a hook sees: the live model and optimizer, counters, and the current epoch's log line."""

    model: torch.nn.Module
    optimizer: Any
    cfg: Any
    epoch: int = 0
    step: int = 0
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    log: dict = field(default_factory=dict)
    stop: bool = False
    train: Any = None                  # the training split the loader draws from (a pst_fast.data.Split)
    run_dir: Any = None                # the run directory (pathlib.Path), or None for a run without files
    norm: Normalization | None = None  # the normalization of the batches the loss hook sees
    steps_per_epoch: int = 0
    total_steps: int = 0               # optimizer steps of the whole schedule (epochs x steps per epoch)


@dataclass
class Hooks:
    param_groups: Callable | None = None
    make_optimizer: Callable | None = None
    loss: Callable | None = None
    prepare_train: Callable | None = None
    on_step: list[Callable] = field(default_factory=list)
    on_epoch_end: list[Callable] = field(default_factory=list)
    stateful: dict[str, Any] = field(default_factory=dict)

    def merged(self, other: "Hooks") -> "Hooks":
        """``self`` extended by ``other``: other's single-slot hooks win, callback lists concatenate."""
        return Hooks(
            param_groups=other.param_groups or self.param_groups,
            make_optimizer=other.make_optimizer or self.make_optimizer,
            loss=other.loss or self.loss,
            prepare_train=other.prepare_train or self.prepare_train,
            on_step=self.on_step + other.on_step,
            on_epoch_end=self.on_epoch_end + other.on_epoch_end,
            stateful=self.stateful | other.stateful,
        )
