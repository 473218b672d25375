"""Lookahead on an exponential moving average of the weights, as airbench94 trains (written from its description).

Every ``EVERY`` optimizer steps the model's floating-point state (weights and BatchNorm statistics) is blended into an
EMA with decay ``BASE ** EVERY * (step / total_steps) ** POWER`` and the model is set to the EMA; the run's last step
leaves the model at the EMA. The EMA starts at the weights of step ``EVERY`` where airbench's starts at the
initialization: its first blend keeps (EVERY / total_steps) ** POWER · BASE ** EVERY (< 1e-6 at 480 steps) of them.
The state of a frozen module (a block held by PST, rolled back to its initialization: its parameters and its BatchNorm
statistics) is copied into the EMA as it is, never blended.
"""
from __future__ import annotations

import torch

from .hooks import TrainState

EVERY, BASE, POWER = 5, 0.95, 3.0


def frozen_state_keys(model: torch.nn.Module) -> set[str]:
    """State-dict keys of the parameters that do not require gradients and of every buffer of a module whose parameters
    (at least one, recursively) all do not."""
    keys = {name for name, p in model.named_parameters() if not p.requires_grad}
    for prefix, module in model.named_modules():
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            keys |= {f"{prefix}.{name}" if prefix else name for name, _ in module.named_buffers()}
    return keys


class Lookahead:
    """``on_step`` hook and ``stateful`` object (the EMA is saved in the run's checkpoint)."""

    def __init__(self):
        self.ema: dict[str, torch.Tensor] | None = None

    def __call__(self, state: TrainState) -> None:
        last = min(state.total_steps, state.cfg.max_steps or state.total_steps)
        if state.step % EVERY and state.step != last:
            return
        model = state.model
        frozen = frozen_state_keys(model)
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
