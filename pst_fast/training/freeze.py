"""Freeze-aware optimizers: ``torch.optim`` SGD / AdamW whose per-block parameter groups can be frozen.

A frozen group is skipped entirely: its parameters stop requiring gradients (so autograd allocates none),
and ``step`` never sees the group — no state read or written, no weight decay, not part of any foreach
kernel. ``freeze(name)`` / ``unfreeze(name, lr_scale)`` address groups by their ``name`` (the block name
of :func:`pst_fast.training.optim.block_param_groups`). Groups keep their optimizer state while frozen,
so an unfrozen block resumes with its momentum as it was.
"""
from __future__ import annotations

import torch

from ..errors import PstFastError


class FreezeAware:
    """Mixin for a ``torch.optim.Optimizer`` whose param groups carry ``name`` and ``frozen``."""

    def _group(self, name: str) -> dict:
        for g in self.param_groups:
            if g.get("name") == name:
                return g
        raise PstFastError(f"optimizer: no parameter group named {name!r} (groups: {', '.join(str(g.get('name')) for g in self.param_groups)})")

    def freeze(self, name: str) -> None:
        g = self._group(name)
        g["frozen"] = True
        for p in g["params"]:
            p.requires_grad_(False)
            p.grad = None

    def unfreeze(self, name: str, lr_scale: float | None = None) -> None:
        g = self._group(name)
        g["frozen"] = False
        if lr_scale is not None:
            g["lr_scale"] = lr_scale
        for p in g["params"]:
            p.requires_grad_(True)

    def sync_requires_grad(self) -> None:
        """Re-apply the groups' frozen flags to their parameters (after ``load_state_dict`` on resume)."""
        for g in self.param_groups:
            for p in g["params"]:
                p.requires_grad_(not g.get("frozen", False))

    @property
    def frozen(self) -> list[str]:
        """Names of the frozen groups, in group order."""
        return [g.get("name") for g in self.param_groups if g.get("frozen")]

    def step(self, closure=None):
        groups = self.param_groups
        self.param_groups = [g for g in groups if not g.get("frozen")]
        try:
            return super().step(closure)
        finally:
            self.param_groups = groups


class FreezeAwareSGD(FreezeAware, torch.optim.SGD):
    """``torch.optim.SGD`` with :meth:`freeze` / :meth:`unfreeze` of named parameter groups."""


class FreezeAwareAdamW(FreezeAware, torch.optim.AdamW):
    """``torch.optim.AdamW`` with :meth:`freeze` / :meth:`unfreeze` of named parameter groups."""
