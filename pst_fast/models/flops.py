"""FLOPs per image: 2×MACs of Conv2d, Linear and attention matmuls, counted with forward hooks.

Normalization, activations, pooling and residual additions are not counted.
"""
from __future__ import annotations

import torch
from torch import nn

from .vit import Attention


def count_flops(model: nn.Module, image_size: int, in_chans: int = 3) -> int:
    """FLOPs of one forward pass on a single zero image of ``in_chans × image_size × image_size`` (eval mode)."""
    return sum(_flops(model, image_size, in_chans, {}).values())


def block_flops(model, image_size: int, in_chans: int = 3) -> dict[str, int]:
    """Forward FLOPs of each block of a :class:`BlockModel` for one image, shallow to deep."""
    return _flops(model, image_size, in_chans, dict(model.blocks.items()))


def _flops(model: nn.Module, image_size: int, in_chans: int, buckets: dict[str, nn.Module]) -> dict[str, int]:
    """FLOPs per bucket (the named sub-modules in ``buckets``; everything under ``''`` when empty)."""
    totals = {name: 0 for name in buckets} or {"": 0}
    current = [next(iter(totals))]

    def conv(m: nn.Conv2d, inp, out):
        totals[current[0]] += 2 * out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear(m: nn.Linear, inp, out):
        totals[current[0]] += 2 * out.numel() * m.in_features

    def attention(m: Attention, inp, out):  # q @ kᵀ and attn @ v: 2 matmuls of tokens² × dim MACs
        tokens, dim = inp[0].shape[-2:]
        totals[current[0]] += 2 * 2 * tokens * tokens * dim

    hooks = {nn.Conv2d: conv, nn.Linear: linear, Attention: attention}
    handles = [m.register_forward_hook(hook) for m in model.modules() for cls, hook in hooks.items() if isinstance(m, cls)]
    handles += [b.register_forward_pre_hook(lambda m, inp, name=name: current.__setitem__(0, name)) for name, b in buckets.items()]
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_chans, image_size, image_size, device=param.device, dtype=param.dtype))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return totals
