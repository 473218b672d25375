"""FallbackLoader: the FolderLoader plan decoded by a thread pool with Pillow, for machines without DALI.

Worker threads decode each image and resize its planned box (Pillow bilinear with a box, antialiased when
shrinking) straight into a uint8 (B, S, S, 3) batch buffer, pinned when CUDA is available; the next batch
decodes while the current one is consumed. The fused ``augment_op`` then adds δ with clamping, flips and
normalizes on the loader's device. Outputs equal the DALI loader's up to resampling rounding (docs/data.md).
"""
from __future__ import annotations

import collections
import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np
import torch

from ..errors import DataError
from ..ops.augment import augment_op
from .folder_loader import FolderLoader, Plan, View
from .safe_pickle import brief

PREFETCH = 2  # batches being decoded ahead of the one consumed


class FallbackLoader(FolderLoader):
    """A :class:`FolderLoader` decoding with Pillow on ``workers`` threads."""

    name = "fallback"

    def _decode_one(self, path: str, box: np.ndarray) -> np.ndarray:
        from PIL import Image

        y0, x0, y1, x1 = box.tolist()
        try:
            with Image.open(path) as im:
                im = im if im.mode == "RGB" else im.convert("RGB")
                return np.asarray(im.resize((self.image_size, self.image_size), Image.BILINEAR, box=(x0, y0, x1, y1)))
        except Exception as e:  # Pillow raises many types for corrupt data
            raise DataError(f"{path}: unreadable image ({type(e).__name__}: {brief(e)})") from None

    def _submit(self, pool: ThreadPoolExecutor, v: View):
        """Start decoding ``v`` into a new batch buffer; returns (view, buffer, futures)."""
        s, n = self.image_size, len(v.idx)
        buf = torch.empty((n, s, s, 3), dtype=torch.uint8, pin_memory=torch.cuda.is_available())
        arr = buf.numpy()

        def run(lo: int, hi: int) -> None:
            for j in range(lo, hi):
                arr[j] = self._decode_one(self.split.files[v.idx[j]], v.boxes[j])

        step = -(-n // self.workers)
        return v, buf, [pool.submit(run, lo, min(lo + step, n)) for lo in range(0, n, step)]

    def _finish(self, v: View, buf: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """δ, flip and normalization of a decoded batch, on the device, in one fused op."""
        n, dev = len(v.idx), self.device
        rows = self.delta_rows(v.idx)
        delta = None if rows is None else torch.from_numpy(rows).to(dev)
        every = torch.arange(n, device=dev)
        return augment_op(buf.to(dev, non_blocking=True), every, delta, None if delta is None else every,
                          torch.zeros(n, 2, dtype=torch.int64, device=dev), torch.from_numpy(v.flips).to(dev), 0, False, scale, bias,
                          torch.float32, self.layout == "channels_last")

    def pixels(self, idx: np.ndarray) -> torch.Tensor:
        """uint8 (B, S, S, 3) host rows ``idx`` with the current epoch's views, before δ, flip and normalization."""
        boxes, flips = self._views(self.epoch)
        with ThreadPoolExecutor(self.workers) as pool:
            _, buf, futures = self._submit(pool, View(idx, boxes[idx], flips[idx]))
            for f in futures:
                f.result()
        return buf

    def batch(self, idx: np.ndarray) -> torch.Tensor:
        """The rows ``idx`` (B,) of the split as one normalized batch with the current epoch's views (random access,
        any number of rows; the attacks' loader-fed path uses it)."""
        boxes, flips = self._views(self.epoch)
        with contextlib.closing(self._decode(Plan(idx, [View(idx, boxes[idx], flips[idx])]))) as xs:
            return next(xs)

    def _decode(self, plan: Plan) -> Iterator[torch.Tensor]:
        scale, bias = self.norm.scale_bias(self.device)
        views = iter(plan.views)
        pool = ThreadPoolExecutor(self.workers)
        try:
            pending = collections.deque(self._submit(pool, v) for _, v in zip(range(PREFETCH), views))
            while pending:
                v, buf, futures = pending.popleft()
                for f in futures:
                    f.result()
                if (nxt := next(views, None)) is not None:
                    pending.append(self._submit(pool, nxt))
                yield self._finish(v, buf, scale, bias)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
