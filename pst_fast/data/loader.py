"""DeviceLoader: the whole uint8 dataset lives on the device; batches come out of one fused op.

No DataLoader workers and no per-sample Python: each epoch draws a seeded permutation on the device,
and each batch is gathered, perturbed (optional int8 δ), cropped, flipped and normalized by
:func:`pst_fast.ops.augment_batch`. Epoch ``e`` of a loader with seed ``s`` is the same sequence of
batches whenever it is drawn (so a resumed run sees the batches an uninterrupted run would).
"""
from __future__ import annotations

from typing import Iterator, NamedTuple, Protocol

import numpy as np
import torch

from ..errors import DataError
from ..ops.augment import augment_batch
from .format import ImageDataset
from .normalization import Normalization


class Batch(NamedTuple):
    x: torch.Tensor    # (B, C, H, W) float, normalized
    y: torch.Tensor    # (B,) int64
    idx: torch.Tensor  # (B,) int64 rows of the dataset


class BatchLoader(Protocol):
    """What the trainer and evaluate() read from a loader: DeviceLoader, and the ImageFolder loaders (pst_fast.data.folder_loader)."""

    name: str              # 'device', 'dali' or 'fallback'
    device: torch.device   # where batches are
    num_classes: int
    norm: Normalization    # batches hold (x / 255 - mean) / std
    layout: str            # 'nchw' or 'channels_last'

    @property
    def num_samples(self) -> int: ...  # images one epoch yields

    def __len__(self) -> int: ...      # batches per epoch

    def __iter__(self) -> Iterator[Batch]: ...

    def set_epoch(self, epoch: int) -> None: ...


def _as_tensor(a, device) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.to(device)
    return torch.from_numpy(np.array(a, copy=True)).to(device)  # a private, writable copy (sources may be memory-mapped)


def alternating_flips(n: int, seed: int, epoch: int) -> np.ndarray:
    """(n,) bool flips of airbench's alternating scheme: a fixed random bit per image (from ``seed``), inverted in odd
    epochs, so every image is seen mirrored and not in every pair of epochs."""
    return (np.random.default_rng([seed, 0xF11]).random(n) < 0.5) ^ bool(epoch % 2)


class DeviceLoader:
    """Iterate over ``dataset`` in batches of ``batch_size`` on ``device``.

    ``delta`` (int8, (N|K, H, W, C)) is added on the fly with clamping: per sample when its first dim is
    N, per class when it is K. ``norm`` defaults to the dataset's (:attr:`ImageDataset.norm`).
    """

    name = "device"

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int = 256,
        shuffle: bool = True,
        seed: int = 0,
        augment: bool = True,
        device: str | torch.device = "cpu",
        drop_last: bool | None = None,
        crop_pad: int = 4,
        pad_mode: str = "zero",
        flip: bool = True,
        alternate_flip: bool = False,
        norm: Normalization | None = None,
        layout: str = "nchw",
        out_dtype: torch.dtype = torch.float32,
        delta=None,
    ):
        if batch_size <= 0:
            raise DataError(f"batch_size={batch_size}: expected a positive integer")
        self.device = torch.device(device)
        self.images = _as_tensor(dataset.images, self.device)
        self.labels = _as_tensor(dataset.labels, self.device)
        self.num_classes = dataset.num_classes
        self.delta = None if delta is None else _as_tensor(delta, self.device)
        if self.delta is not None:
            if self.delta.dtype != torch.int8 or self.delta.shape[1:] != self.images.shape[1:]:
                raise DataError(f"delta: expected int8 of shape (N|K, {tuple(self.images.shape[1:])}), got {self.delta.dtype} {tuple(self.delta.shape)}")
            if self.delta.shape[0] not in (len(self.images), self.num_classes):
                raise DataError(f"delta: first dim {self.delta.shape[0]} is neither N={len(self.images)} nor K={self.num_classes}")
        self.class_wise = self.delta is not None and self.delta.shape[0] != len(self.images)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = shuffle if drop_last is None else drop_last
        self.seed = seed
        self.epoch = 0
        self.crop_pad = crop_pad if augment else 0
        self.pad_mode = pad_mode
        side = min(self.images.shape[1:3])
        if pad_mode == "reflect" and self.crop_pad >= side:  # checked here so that a run fails before it trains
            raise DataError(f"--crop-pad {crop_pad} with --pad-mode reflect: expected below the image side {side} (one mirror image per side)")
        self.flip = flip and augment
        self.alternate_flip = alternate_flip
        self.norm = norm or dataset.norm
        self.layout = layout
        self.out_dtype = out_dtype

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_samples(self) -> int:
        """Images one epoch yields."""
        return len(self) * self.batch_size if self.drop_last else len(self.images)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def generator(self) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed(self.seed * 1_000_003 + self.epoch)
        return g

    def __iter__(self) -> Iterator[Batch]:
        g = self.generator()
        n = len(self.images)
        order = torch.randperm(n, generator=g, device=self.device) if self.shuffle else torch.arange(n, device=self.device)
        flips = None
        if self.flip and self.alternate_flip:
            flips = torch.from_numpy(alternating_flips(n, self.seed, self.epoch)).to(self.device, torch.uint8)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x = augment_batch(
                self.images, idx, delta=self.delta, labels=self.labels if self.class_wise else None,
                crop_pad=self.crop_pad, pad_mode=self.pad_mode, flip=self.flip, mean=self.norm.mean, std=self.norm.std,
                layout=self.layout, out_dtype=self.out_dtype, generator=g, flips=None if flips is None else flips[idx],
            )
            yield Batch(x, self.labels[idx], idx)
        self.epoch += 1
