"""Normalization: the one convention for what a model sees. Pixels x01 in [0, 1], per channel, enter a model as
``(x01 - mean) / std``; the loaders produce that from uint8 levels v as ``v * scale + bias`` (``scale_bias``).

A canonical split normalizes with the mean/std of its training split (``meta.json``), an ImageFolder tree with
ImageNet's (:data:`IMAGENET`). Every (B, C, H, W) float batch, NCHW or channels_last, goes between the two spaces
with :meth:`Normalization.to01` and :meth:`Normalization.from01`; torch is imported on first use only.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass


@dataclass(frozen=True)
class Normalization:
    """Per-channel ``mean`` and ``std`` of pixels in [0, 1] (one float per channel each)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self):
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))

    @classmethod
    def identity(cls, channels: int) -> "Normalization":
        """mean 0, std 1: batches stay in [0, 1]."""
        return cls((0.0,) * channels, (1.0,) * channels)

    def tensors(self, device):
        """(mean, std) as float32 (1, C, 1, 1) tensors on ``device`` (made once per device)."""
        return _tensors(self, str(device))

    def to01(self, x):
        """Normalized (B, C, H, W) -> pixels ``x * std + mean`` clamped to [0, 1] (the layout of ``x``)."""
        mean, std = self.tensors(x.device)
        return (x * std + mean).clamp_(0, 1)

    def from01(self, x01, memory_format=None):
        """Pixels in [0, 1] (B, C, H, W) -> ``(x01 - mean) / std``, contiguous in ``memory_format`` (default NCHW)."""
        import torch

        mean, std = self.tensors(x01.device)
        return ((x01 - mean) / std).contiguous(memory_format=torch.contiguous_format if memory_format is None else memory_format)

    def scale_bias(self, device=None):
        """(scale, bias) float32 (C,) with ``v * scale + bias == (v / 255 - mean) / std`` for uint8 levels v (the fused ops' form)."""
        from ..ops.augment import normalization

        return normalization(self.mean, self.std, device)


@functools.lru_cache(maxsize=64)
def _tensors(norm: Normalization, device: str):
    import torch

    return (torch.tensor(norm.mean, device=device).view(1, -1, 1, 1), torch.tensor(norm.std, device=device).view(1, -1, 1, 1))


IMAGENET = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # ImageFolder trees (no meta.json to hold their own)
