"""FolderLoader: batches decoded from an ImageFolder split every epoch; the part the DALI and fallback loaders share.

Both loaders run one plan, drawn from (seed, epoch) alone: the order of the split (a permutation when
shuffling), this shard's slice of it (rows ``floor(i N / S)`` to ``floor((i + 1) N / S)`` of the order, as
DALI's file reader shards) and, per image, a box in source pixels and a flip. Training boxes are random
resized crops (area fraction in ``scale``, aspect ratio log-uniform in ``ratio``, torchvision's ten tries, then
the whole image clamped to ``ratio``); evaluation boxes are the centred square of side ``crop_fraction`` x
the short side. Each image is decoded, its box resized to ``image_size`` x ``image_size`` (bilinear,
antialiased when shrinking), the int8 poison δ (per class or per sample, at that size) added with clamping
to [0, 255], flipped, and normalized to float32 (B, C, S, S), NCHW or channels_last. Epoch ``e`` of seed
``s`` is the same sequence of batches whenever it is drawn, and an image gets the same view in every shard
layout. Iteration yields :class:`~pst_fast.data.loader.Batch` like the DeviceLoader.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import os
from typing import Iterator, NamedTuple

import numpy as np
import torch

from ..errors import DataError, PstFastError
from ..ops.augment import LAYOUTS
from .folder import FolderSplit
from .loader import Batch, alternating_flips
from .normalization import IMAGENET, Normalization

IMAGENET_MEAN, IMAGENET_STD = IMAGENET.mean, IMAGENET.std
LOADERS = ("auto", "dali", "fallback")
TRIES = 10          # random resized crop: boxes tried per image before the fallback
CHUNK = 1 << 16     # views are drawn per chunk of rows, each from its own (seed, epoch, chunk) stream


class View(NamedTuple):
    idx: np.ndarray    # (B,) int64 rows of the split
    boxes: np.ndarray  # (B, 4) float32 (y0, x0, y1, x1) in source pixels
    flips: np.ndarray  # (B,) bool


class Plan(NamedTuple):
    order: np.ndarray  # (N,) int64: the whole split in this epoch's order (every shard holds the same)
    views: list        # [View] of this shard's batches


def random_resized_boxes(sizes: np.ndarray, u: np.ndarray, scale, ratio) -> np.ndarray:
    """(n, 4) float boxes (y0, x0, y1, x1) of random resized crops of (n, 2) (H, W) ``sizes`` from (n, TRIES, 4) uniforms ``u``."""
    h, w = sizes[:, :1].astype(np.float64), sizes[:, 1:].astype(np.float64)
    target = h * w * (scale[0] + u[..., 0] * (scale[1] - scale[0]))
    log_lo, log_hi = np.log(ratio[0]), np.log(ratio[1])
    aspect = np.exp(log_lo + u[..., 1] * (log_hi - log_lo))
    bw, bh = np.sqrt(target * aspect), np.sqrt(target / aspect)
    fits = (bw <= w) & (bh <= h)
    rows, t = np.arange(len(sizes)), fits.argmax(1)
    bw, bh, h, w = bw[rows, t], bh[rows, t], h[:, 0], w[:, 0]
    x0, y0 = u[rows, t, 2] * (w - bw), u[rows, t, 3] * (h - bh)
    none = ~fits.any(1)  # torchvision's fallback: the whole image, cut to the nearest allowed aspect ratio, centred
    fw = np.where(w / h > ratio[1], h * ratio[1], w)
    fh = np.where(w / h < ratio[0], w / ratio[0], h)
    bw, bh = np.where(none, fw, bw), np.where(none, fh, bh)
    x0, y0 = np.where(none, (w - fw) / 2, x0), np.where(none, (h - fh) / 2, y0)
    return np.stack([y0, x0, y0 + bh, x0 + bw], 1)


def center_boxes(sizes: np.ndarray, crop_fraction: float) -> np.ndarray:
    """(n, 4) boxes (y0, x0, y1, x1): the centred square of side ``crop_fraction`` x the short side."""
    h, w = sizes[:, 0].astype(np.float64), sizes[:, 1].astype(np.float64)
    side = crop_fraction * np.minimum(h, w)
    y0, x0 = (h - side) / 2, (w - side) / 2
    return np.stack([y0, x0, y0 + side, x0 + side], 1)


class FolderLoader:
    """Iterate over an ImageFolder ``split`` in batches of ``batch_size`` images of ``image_size`` px (0: native).

    ``augment`` picks the training transform (random resized crop + ``flip``) over the evaluation one (centre
    crop); ``shard_id``/``num_shards`` select this worker's part of each epoch; ``delta`` (int8 (K|N, S, S, C),
    default: the split's ``delta``, from ``--poison``) is added before the flip and the normalization ``norm`` (default: the
    split's, ImageNet's mean/std). ``workers``: decoding threads.
    Subclasses implement ``_decode(plan)``: one normalized float tensor per view.
    """

    name = ""

    def __init__(self, split: FolderSplit, batch_size: int = 256, image_size: int = 0, shuffle: bool = True, seed: int = 0,
                 augment: bool = True, device: str | torch.device = "cpu", drop_last: bool | None = None, flip: bool = True,
                 alternate_flip: bool = False, shard_id: int = 0, num_shards: int = 1, norm: Normalization | None = None, layout: str = "nchw",
                 delta=None, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), crop_fraction: float = 0.875, workers: int | None = None):
        if batch_size <= 0:
            raise DataError(f"batch_size={batch_size}: expected a positive integer")
        if not 0 <= shard_id < num_shards:
            raise DataError(f"shard_id={shard_id}, num_shards={num_shards}: expected 0 <= shard_id < num_shards")
        if layout not in LAYOUTS:
            raise DataError(f"layout={layout!r}: expected one of {', '.join(LAYOUTS)}")
        if not (0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1] and 0 < crop_fraction <= 1):
            raise DataError(f"scale={scale} ratio={ratio} crop_fraction={crop_fraction}: expected 0 < scale <= 1, 0 < ratio, 0 < crop_fraction <= 1")
        self.split = split
        self.image_size = image_size or split.native_size() or 0
        if self.image_size <= 0:
            raise DataError(f"{split.root}: image_size 0 (native) needs square images of one size; choose an --image-size")
        self.delta = split.delta if delta is None else np.asarray(delta)
        if self.delta is not None:
            s = self.image_size
            if self.delta.dtype != np.int8 or self.delta.shape[1:] != (s, s, 3) or self.delta.shape[0] not in (len(split), split.num_classes):
                raise DataError(f"delta: expected int8 (K={split.num_classes} or N={len(split)}, {s}, {s}, 3) at the image size {s}, "
                                f"got {self.delta.dtype} {self.delta.shape}")
        self.class_wise = self.delta is not None and self.delta.shape[0] != len(split)
        self.device = torch.device(device)
        self.labels = torch.from_numpy(split.labels).to(self.device)
        self.num_classes = split.num_classes
        self.batch_size, self.shuffle, self.seed, self.augment = batch_size, shuffle, seed, augment
        self.drop_last = shuffle if drop_last is None else drop_last
        self.flip = flip and augment
        self.alternate_flip = alternate_flip
        self.shard_id, self.num_shards = shard_id, num_shards
        self.lo, self.hi = shard_id * len(split) // num_shards, (shard_id + 1) * len(split) // num_shards
        self.norm, self.layout = norm or split.norm, layout
        self.scale, self.ratio, self.crop_fraction = tuple(scale), tuple(ratio), crop_fraction
        self.workers = workers or os.cpu_count() or 1
        self.epoch = 0
        self._views_of: tuple = (None, None)  # (epoch, its views)

    def __len__(self) -> int:
        n = self.hi - self.lo
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_samples(self) -> int:
        """Images one epoch of this shard yields."""
        return len(self) * self.batch_size if self.drop_last else self.hi - self.lo

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def describe(self) -> str:
        return f"{self.name} ({self.workers} threads)"

    def _views(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(N, 4) boxes and (N,) flips of every row of the split for ``epoch`` (kept for the epoch: the random-access
        ``batch`` of the attacks asks for them once per batch)."""
        if self._views_of[0] != epoch:
            self._views_of = (epoch, self._draw_views(epoch))
        return self._views_of[1]

    def _draw_views(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Boxes and flips of ``epoch``, drawn per chunk of rows."""
        sizes = self.split.sizes
        if not self.augment:
            return center_boxes(sizes, self.crop_fraction).astype(np.float32), np.zeros(len(sizes), bool)
        boxes, flips = [], []
        for c, lo in enumerate(range(0, len(sizes), CHUNK)):
            rng = np.random.default_rng([self.seed, epoch, c])
            part = sizes[lo : lo + CHUNK]
            boxes.append(random_resized_boxes(part, rng.random((len(part), TRIES, 4)), self.scale, self.ratio))
            flips.append(rng.random(len(part)) < 0.5 if self.flip else np.zeros(len(part), bool))
        if self.flip and self.alternate_flip:
            flips = [alternating_flips(len(sizes), self.seed, epoch)]
        return np.concatenate(boxes).astype(np.float32), np.concatenate(flips)

    def plan(self, epoch: int) -> Plan:
        """The order of ``epoch`` and the views of this shard's batches."""
        n = len(self.split)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        boxes, flips = self._views(epoch)
        idx, b = order[self.lo : self.hi], self.batch_size
        views = [View(i, boxes[i], flips[i]) for i in (idx[k * b : (k + 1) * b] for k in range(len(self)))]
        return Plan(order, views)

    def delta_rows(self, idx: np.ndarray) -> np.ndarray | None:
        """δ of the images ``idx``: (B, S, S, C) int8 rows of a per-class or per-sample delta, or None."""
        if self.delta is None:
            return None
        return np.ascontiguousarray(self.delta[self.split.labels[idx] if self.class_wise else idx])

    def _decode(self, plan: Plan) -> Iterator[torch.Tensor]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Batch]:
        plan = self.plan(self.epoch)
        with contextlib.closing(self._decode(plan)) as xs:
            for view, x in zip(plan.views, xs):
                idx = torch.from_numpy(view.idx).to(self.device)
                yield Batch(x, self.labels[idx], idx)
        self.epoch += 1


@functools.cache
def dali_available() -> bool:
    """Whether ``nvidia.dali`` imports (tried once, on first use only)."""
    try:
        importlib.import_module("nvidia.dali")
    except (ImportError, OSError):
        return False
    return True


def resolve_loader(kind: str) -> str:
    """'auto' -> 'dali' when nvidia.dali imports, else 'fallback'; 'dali' must import."""
    if kind not in LOADERS:
        raise PstFastError(f"--loader {kind!r}: expected one of {', '.join(LOADERS)}")
    if kind == "dali" and not dali_available():
        raise PstFastError("--loader dali: nvidia.dali does not import here (pip install 'pst-fast[dali]'), or use --loader fallback")
    return kind if kind != "auto" else ("dali" if dali_available() else "fallback")


def folder_loader(kind: str, split: FolderSplit, **kw) -> FolderLoader:
    """A DALI or fallback loader (``kind``: auto, dali or fallback) over ``split``; ``kw`` as :class:`FolderLoader`."""
    if resolve_loader(kind) == "dali":
        from .dali import DaliLoader as cls
    else:
        from .fallback import FallbackLoader as cls
    return cls(split, **kw)
