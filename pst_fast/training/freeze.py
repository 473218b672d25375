"""Freeze-aware optimizers: ``torch.optim`` SGD / AdamW whose named parameter groups can be frozen.

A frozen group is skipped entirely: its parameters stop requiring gradients (so autograd allocates none),
and ``step`` never sees the group — no state read or written, no weight decay, not part of any foreach
kernel. ``freeze(name)`` / ``unfreeze(name, lr_scale)`` address groups by their ``name``. Groups keep their
optimizer state while frozen, so an unfrozen block resumes with its momentum as it was.

Any ``nn.Module`` works: ``FreezeAwareSGD.from_blocks({"stem": [m.conv1, m.bn1], "layer1": m.layer1, ...},
model=m, lr=0.1)`` makes one group per block (and a ``rest`` group of the model's other parameters), or pass
ordinary parameter groups that each carry a ``name``. Every group needs its own name and every parameter
belongs to exactly one group (shared or repeated parameters are refused). For pst_fast's registered models,
:func:`pst_fast.training.optim.block_param_groups` makes the groups from ``model.blocks``.
"""
from __future__ import annotations

from typing import Mapping, Sequence, Union

import torch
from torch import nn

from ..errors import PstFastError

# A block: a module, or several modules / parameters trained and frozen together (e.g. [conv1, bn1]).
Block = Union[nn.Module, Sequence[Union[nn.Module, torch.Tensor]]]


def block_groups(blocks: Mapping[str, Block] | Sequence[Block], model: nn.Module | None = None) -> list[dict]:
    """``[{"params", "name"}]``: one group per block with parameters, in order, then ``rest``: the parameters of
    ``model`` (when given) in no block. A sequence of blocks is named ``"0", "1", ...``; a mapping by its keys."""
    named = blocks.items() if hasattr(blocks, "items") else ((str(i), b) for i, b in enumerate(blocks))
    groups = []
    for name, block in named:
        parts = [block] if isinstance(block, nn.Module) else list(block)
        params = [p for part in parts for p in (part.parameters() if isinstance(part, nn.Module) else [part])]
        if params:
            groups.append({"params": params, "name": name})
    if model is not None:
        taken = {id(p) for g in groups for p in g["params"]}
        rest = [p for p in model.parameters() if id(p) not in taken]
        if rest:
            groups.append({"params": rest, "name": "rest"})
    return groups


class FreezeAware:
    """Mixin for a ``torch.optim.Optimizer`` whose param groups carry ``name`` and ``frozen``."""

    @classmethod
    def from_blocks(cls, blocks: Mapping[str, Block] | Sequence[Block], model: nn.Module | None = None, **defaults):
        """The optimizer over :func:`block_groups` ``(blocks, model)``; ``defaults`` are the optimizer's (lr, ...)."""
        return cls(block_groups(blocks, model), **defaults)

    def add_param_group(self, param_group: dict) -> None:
        """torch's ``add_param_group`` once the group has a name of its own and no parameter another group has."""
        params = param_group["params"]
        param_group["params"] = params = [params] if isinstance(params, torch.Tensor) else list(params)
        name = param_group.get("name")
        if not isinstance(name, str):
            raise PstFastError(f"optimizer: parameter group {len(self.param_groups)} has no 'name' (groups are frozen by name: "
                               "give each group a str 'name', or use from_blocks)")
        if any(g["name"] == name for g in self.param_groups):
            raise PstFastError(f"optimizer: two parameter groups are named {name!r}")
        owner = {id(p): g["name"] for g in self.param_groups for p in g["params"]}
        for p in params:
            p = p[1] if isinstance(p, tuple) else p  # torch also takes (name, tensor) pairs
            if id(p) in owner:
                where = "twice" if owner[id(p)] == name else f"in group {name!r} and in group {owner[id(p)]!r}"
                raise PstFastError(f"optimizer: a parameter is listed {where} (shared between blocks or repeated); "
                                   "every parameter must belong to exactly one group")
            owner[id(p)] = name
        super().add_param_group(param_group)

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
