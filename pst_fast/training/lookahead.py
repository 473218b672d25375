"""Lookahead on an exponential moving average of the weights, as airbench94 trains (written from its description).

From epoch ``START_EPOCH`` on, every ``EVERY`` optimizer steps the model's floating-point state (weights and BatchNorm
statistics) is blended into an EMA with decay ``BASE ** EVERY * (step / total_steps) ** POWER`` and the model is set
to the EMA; the run's last step leaves the model at the EMA. A parameter that does not require gradients (a block
frozen by PST, rolled back to its initialization) is copied into the EMA as it is, never blended back.
"""
from __future__ import annotations

import torch

from .hooks import TrainState

START_EPOCH, EVERY, BASE, POWER = 3, 5, 0.95, 3.0


class Lookahead:
    """``on_step`` hook and ``stateful`` object (the EMA is saved in the run's checkpoint)."""

    def __init__(self):
        self.ema: dict[str, torch.Tensor] | None = None

    def __call__(self, state: TrainState) -> None:
        last = min(state.total_steps, state.cfg.max_steps or state.total_steps)
        if state.step < START_EPOCH * state.steps_per_epoch or (state.step % EVERY and state.step != last):
            return
        model = state.model
        frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
        with torch.no_grad():
            current = {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
            if self.ema is None:
                self.ema = {k: v.detach().clone() for k, v in current.items()}
            decay = BASE ** EVERY * (state.step / state.total_steps) ** POWER
            for k, v in current.items():
                if k in frozen:
                    self.ema[k].copy_(v)
                    continue
                if state.step % EVERY == 0:
                    self.ema[k].lerp_(v, 1 - decay)
                v.copy_(self.ema[k])

    def state_dict(self) -> dict:
        return {"ema": self.ema}

    def load_state_dict(self, d: dict) -> None:
        self.ema = d["ema"]
