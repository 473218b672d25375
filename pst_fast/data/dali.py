"""DaliLoader: the FolderLoader plan as an NVIDIA DALI pipeline; ``nvidia.dali`` is imported only when one runs.

One pipeline per epoch, fed batch by batch from the plan through one external source: the encoded bytes of the
batch's files (read here, in the plan's order and this shard's slice), their boxes, flips and δ rows -> image decoder
(``mixed`` on a CUDA device, ``cpu`` without one: ``device_id=None``) -> resize of each planned box to S x S -> + δ in
int16, clamped to [0, 255] -> crop_mirror_normalize (flip, normalize, CHW or HWC). Each batch holds exactly the plan's
images (a shard's last batch is not padded), and the source ends DALI's epoch at the plan's last batch.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from ..errors import DataError, PstFastError
from .folder_loader import FolderLoader, Plan


def _reason(e: Exception) -> str:
    """The line of a DALI error that says what went wrong (the one after 'encountered:'), else its first line."""
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    for i, line in enumerate(lines[:-1]):
        if line == "encountered:":
            return lines[i + 1]
    return lines[0] if lines else type(e).__name__


class DaliLoader(FolderLoader):
    """A :class:`FolderLoader` decoding with DALI; on a CUDA ``device`` the JPEG decode runs on the GPU (``mixed``)."""

    name = "dali"

    def __init__(self, split, **kw):
        super().__init__(split, **kw)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise PstFastError(f"device {self.device}: CUDA is not available; DALI's mixed decoder needs it (use device cpu)")
        self.device_id = None
        if self.device.type == "cuda":
            self.device_id = self.device.index if self.device.index is not None else torch.cuda.current_device()

    def describe(self) -> str:
        where = "CPU pipeline, device_id=None" if self.device_id is None else f"mixed decoding on cuda:{self.device_id}"
        return f"dali ({where}, {self.workers} threads)"

    def _pipeline(self, plan: Plan):
        from nvidia.dali import Pipeline, fn, math, types

        gpu, s, views = self.device_id is not None, self.image_size, plan.views

        def feed(info):
            if info.iteration >= len(views):  # the plan is over: end DALI's epoch, no prefetched iteration runs past it
                raise StopIteration
            v = views[info.iteration]
            box = np.ascontiguousarray
            out = (self._encoded(v.idx), box(v.boxes[:, :2]), box(v.boxes[:, 2:]), v.flips.astype(np.int32))
            return out if self.delta is None else (*out, self.delta_rows(v.idx))

        pipe = Pipeline(batch_size=self.batch_size, num_threads=self.workers, device_id=self.device_id, seed=self.seed * 1_000_003 + self.epoch)
        with pipe:
            jpegs, start, end, flip, *delta = fn.external_source(source=feed, batch_info=True, num_outputs=4 + (self.delta is not None))
            images = fn.decoders.image(jpegs, device="mixed" if gpu else "cpu", output_type=types.RGB, adjust_orientation=False)
            images = fn.resize(images, size=[s, s], roi_start=start, roi_end=end, interp_type=types.INTERP_LINEAR, antialias=True)
            if delta:
                d = delta[0].gpu() if gpu else delta[0]
                images = fn.cast(math.clamp(fn.cast(images, dtype=types.INT16) + fn.cast(d, dtype=types.INT16), 0, 255), dtype=types.UINT8)
            x = fn.crop_mirror_normalize(images, mirror=flip, mean=[255 * m for m in self.norm.mean], std=[255 * sd for sd in self.norm.std],
                                         dtype=types.FLOAT, output_layout="CHW" if self.layout == "nchw" else "HWC")
            pipe.set_outputs(x)
        pipe.build()
        return pipe

    def _encoded(self, idx: np.ndarray) -> list[np.ndarray]:
        """The bytes of the files ``idx`` as uint8 arrays (what DALI's decoder reads)."""
        out = []
        for i in idx:
            try:
                out.append(np.fromfile(self.split.files[i], dtype=np.uint8))
            except OSError as e:
                raise DataError(f"{self.split.files[i]}: cannot read ({e.strerror or e})") from None
        return out

    def _dali(self, call):
        """``call()``, with DALI's multi-line RuntimeError turned into one DataError line."""
        try:
            return call()
        except RuntimeError as e:
            raise DataError(f"{self.split.root}: DALI could not produce a batch ({_reason(e)}); --loader fallback names the file it cannot read") from None

    def _decode(self, plan: Plan) -> Iterator[torch.Tensor]:
        from nvidia.dali.plugin.pytorch import feed_ndarray

        stream = torch.cuda.current_stream(self.device) if self.device_id is not None else None
        pipe = self._dali(lambda: self._pipeline(plan))
        try:
            for _ in plan.views:
                (x_tl,) = self._dali(pipe.run)
                dense = x_tl.as_tensor()
                x = torch.empty(dense.shape(), dtype=torch.float32, device=self.device)
                feed_ndarray(dense, x, cuda_stream=stream)
                yield x if self.layout == "nchw" else x.permute(0, 3, 1, 2)
        finally:
            del pipe
