"""BlockModel: the one interface every model exposes — an ordered list of named blocks, shallow to deep.

``forward`` is exactly the composition of ``blocks`` in order (each block maps a tensor to a tensor; the
last, ``head``, ends in the logits). Staged freezing, per-block learning rates, per-block sharpness and
activation probes all address a model through these blocks. Inputs arrive already normalized.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class BlockModel(nn.Module):
    """``blocks``: (name, module) pairs, shallow to deep; ``default_image_size``: input side in pixels.

    A model whose initialization reads data (airbench's whitening filters) sets ``data_init_samples`` to the number of
    training images it wants and overrides :meth:`data_init`; the trainer calls it once, before any weights are loaded."""

    data_init_samples = 0

    def __init__(self, blocks: list[tuple[str, nn.Module]], default_image_size: int = 32):
        super().__init__()
        self.blocks = nn.ModuleDict(blocks)
        self.default_image_size = default_image_size

    def data_init(self, images: torch.Tensor) -> None:
        """Data-dependent initialization from ``images`` (N, 3, H, W), normalized as the model's inputs; none by default."""

    def init_from(self, num_rows: int, read) -> None:
        """:meth:`data_init` on ``data_init_samples`` rows evenly strided over a training set of ``num_rows``;
        ``read(idx)`` returns those rows ((B,) int64 numpy) as normalized (B, 3, H, W) images. Nothing when not needed."""
        if self.data_init_samples and num_rows:
            self.data_init(read(np.arange(0, num_rows, max(1, num_rows // self.data_init_samples))[:self.data_init_samples]))

    @property
    def block_names(self) -> list[str]:
        return list(self.blocks.keys())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalized images -> (B, num_classes) logits."""
        return self.forward_from(x, 0)

    def forward_from(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Run blocks ``start, start+1, ...`` on ``x`` (the output of block ``start - 1``)."""
        for block in list(self.blocks.values())[start:]:
            x = block(x)
        return x

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every block's output, shallow to deep (the last one is the logits)."""
        outs = []
        for block in self.blocks.values():
            x = block(x)
            outs.append(x)
        return outs


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    """Conv k×k (no bias, 'same' padding) -> BatchNorm -> ReLU (optional)."""
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Head(nn.Sequential):
    """(B, C, H, W) -> (B, num_classes): global average pool -> flatten -> linear."""

    def __init__(self, cin: int, num_classes: int):
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))


class Residual(nn.Module):
    """ReLU(body(x) + shortcut(x)), the post-activation residual block; ``shortcut`` defaults to identity."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None):
        super().__init__()
        self.body = body
        self.shortcut = nn.Identity() if shortcut is None else shortcut
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))
