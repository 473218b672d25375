"""A split's rows by index, as float pixels in [0, 1] (B, C, H, W): what PST's probe and the attacks read.

A canonical split's rows are its uint8 images (a poison's δ is in them) gathered by the fused op. An ImageFolder
split's are decoded with its evaluation view (the centred square of 0.875 x the short side, resized to S px) and the
δ attached to it added with clamping, by the fallback loader's Pillow threads: the evaluation batches of that loader
before normalization. :func:`folder_pixels` / :func:`array_pixels` read rows once; :func:`folder_rows` /
:func:`array_rows` give repeated random access (:class:`Rows`): a canonical split resident on the device, a tree
decoded once into host memory when its images at S px fit :func:`decode_cache_budget`, else on every read (both give
the same values). torch is imported on first use only.
"""
from __future__ import annotations

import os
from typing import Callable, NamedTuple

import numpy as np

from ..errors import PstFastError
from .normalization import Normalization

CACHE_CHUNK = 4096  # images decoded per call while filling a tree's decode cache


class Rows(NamedTuple):
    """Random access to a split's rows on one device."""

    clean: Callable  # (B,) int64 device rows -> float (B, C, H, W) in [0, 1] on the device
    shape: tuple     # (C, H, W)
    how: str         # how rows are read, for a poison's meta ('' for a split resident on the device)


def gather(images, idx):
    """Float (B, C, H, W) in [0, 1], contiguous, of the rows ``idx`` of a resident uint8 (N, H, W, C) tensor."""
    from ..ops.augment import augment_batch

    c = images.shape[-1]
    return augment_batch(images, idx, crop_pad=0, flip=False, mean=(0.0,) * c, std=(1.0,) * c)


def array_pixels(images: np.ndarray, idx: np.ndarray, device="cpu"):
    """The rows ``idx`` of uint8 (N, H, W, C) ``images`` (memory-mapped or not) as float (B, C, H, W) in [0, 1] on ``device``."""
    import torch

    rows = torch.from_numpy(np.asarray(images[idx])).to(device)
    return gather(rows, torch.arange(len(rows), device=rows.device))


def array_rows(images: np.ndarray, device) -> Rows:
    """:class:`Rows` of uint8 (N, H, W, C) ``images``, copied to ``device`` once."""
    import torch

    resident = torch.from_numpy(np.array(images)).to(device)
    _, h, w, c = resident.shape
    return Rows(lambda idx: gather(resident, idx), (c, h, w), "")


def _evaluation_loader(split, size: int, device):
    """The fallback loader of ``split`` with the evaluation view at ``size`` px (0: native) and batches left in [0, 1]."""
    from .fallback import FallbackLoader

    return FallbackLoader(split, 256, size, shuffle=False, augment=False, device=device, norm=Normalization.identity(3))


def folder_pixels(split, idx: np.ndarray, device="cpu", size: int = 0):
    """The rows ``idx`` of an ImageFolder ``split``, evaluation view at ``size`` px, δ added, as float (B, 3, S, S) in [0, 1]."""
    return _evaluation_loader(split, size, device).batch(np.asarray(idx, dtype=np.int64))


def decode_cache_budget() -> int:
    """Bytes of host memory a tree's decoded images may take: ``PST_FAST_DECODE_CACHE_GB``, else a quarter of the
    memory available now (of the physical memory where that is unknown; 0 = no cache when neither is)."""
    if gb := os.environ.get("PST_FAST_DECODE_CACHE_GB"):
        try:
            return int(float(gb) * 2**30)
        except ValueError:
            raise PstFastError(f"PST_FAST_DECODE_CACHE_GB={gb!r}: expected a number of GB") from None
    for pages in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):  # the first is Linux-only
        try:
            return os.sysconf(pages) * os.sysconf("SC_PAGE_SIZE") // 4
        except (ValueError, OSError):
            continue
    return 0


def folder_rows(split, device, size: int = 0, progress: bool = False) -> Rows:
    """:class:`Rows` of an ImageFolder ``split`` (evaluation view at ``size`` px, δ added): decoded once into host memory
    when its uint8 images fit :func:`decode_cache_budget`, else every read decodes its rows again."""
    import torch
    from tqdm.auto import tqdm

    loader = _evaluation_loader(split, size, device)
    n, s = len(split), loader.image_size
    if (need := n * s * s * 3) > (budget := decode_cache_budget()):
        return Rows(lambda idx: loader.batch(idx.cpu().numpy()), (3, s, s),
                    f"every batch ({need / 2**20:,.0f} MiB of images > the decode cache budget, {budget / 2**20:,.0f} MiB)")
    images = torch.empty((n, s, s, 3), dtype=torch.uint8)
    for lo in tqdm(range(0, n, CACHE_CHUNK), desc="decode", unit="chunk", disable=not progress):
        idx = np.arange(lo, min(lo + CACHE_CHUNK, n))
        rows = loader.pixels(idx)
        if (delta := loader.delta_rows(idx)) is not None:  # as the fused op adds it: in integers, clamped
            rows = (rows.to(torch.int16) + torch.from_numpy(delta)).clamp_(0, 255).to(torch.uint8)
        images[lo : lo + CACHE_CHUNK] = rows
    dev = loader.device

    def clean(idx):
        rows = images[idx.cpu()].to(dev)
        return gather(rows, torch.arange(len(rows), device=dev))

    return Rows(clean, (3, s, s), f"once, into host memory ({need / 2**20:,.0f} MiB)")
