"""Model-free attacks on ImageFolder trees: the canonical generator run on the training split's evaluation views.

Every training image is decoded once with the evaluation transform (the centred square of 0.875 x its short side,
resized to S px: what EM on trees reads), the attack runs on that (N, S, S, 3) array exactly as on a canonical split,
and δ = poisoned - clean is kept per sample as int8 levels (N, S, S, 3). The loaders add it to each training view
(docs/data.md), so a δ made on the centre view lands on the random resized crops at the same pixel positions.

pst_fast's own adaptation, declared: an additive int8 δ cannot carry every change. OPS sets a pixel to an extreme
colour and CUDA renormalizes a blurred image, both of which can move a pixel by more than 127 levels; such entries
are clipped to [-128, 127], and their number is recorded in the poison's meta (``clipped``, with ``entries``).
"""
from __future__ import annotations

import numpy as np

from ..data.folder import FolderSplit
from ..data.format import ImageDataset
from ..data.rows import decode_cache_budget
from ..errors import PstFastError

MODEL_FREE = ("lsp", "ops", "ar", "cuda", "random", "random-class", "region")  # attacks of synthetic.py: no surrogate


def on_views(name: str, generate):
    """``tree(split, image_size, params, seed, device, progress) -> (int8 δ (N, S, S, 3), info)`` running ``generate`` (a
    canonical generator) on the evaluation views of ``split``; ``name`` (the attack's) for errors."""

    def tree(split: FolderSplit, image_size: int, p, seed: int, device="cpu", progress: bool = True) -> tuple[np.ndarray, dict]:
        from ..data.fallback import FallbackLoader

        n, s = len(split), image_size
        need = n * s * s * 3 * 4  # clean and poisoned uint8, their int16 difference
        if need > (budget := decode_cache_budget()):
            raise PstFastError(f"attack {name}: {n} images at {s} px need {need / 2**30:.1f} GiB in memory, more than the decode budget "
                               f"({budget / 2**30:.1f} GiB; PST_FAST_DECODE_CACHE_GB); import at a smaller --image-size")
        loader = FallbackLoader(split, 256, s, shuffle=False, augment=False, device="cpu")
        clean = loader.pixels(np.arange(n)).numpy()
        view = ImageDataset(clean, split.labels, {"name": split.root.name, "classes": split.classes})
        result = generate(view, p, seed, device=device, progress=progress)
        d = result.images.astype(np.int16) - clean
        outside = (d < -128) | (d > 127)
        info = {**result.info, "view": f"centre {loader.crop_fraction} of the short side -> {s} px", "clipped": int(outside.sum()),
                "entries": int(d.size)}
        return np.clip(d, -128, 127).astype(np.int8), info

    return tree
