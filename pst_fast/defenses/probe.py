"""PST's detector probe: a fixed, class-balanced subset of the training split, and what a model has learned from it.

Two measurements, both on images the model trains on (no test data):

- **Shortcut gap** (pst_fast's trap detector): the probe's accuracy minus its accuracy on the same images seen
  through a *view* that keeps what natural images share with their label and destroys small perturbations —
  ``gray`` (grayscale), ``jpeg`` (JPEG quality 10), ``blur`` (3×3 binomial). What a model learns from clean images
  survives most views (shape survives grayscale and blur, colour and layout survive JPEG), while a perturbation
  shortcut is destroyed by most of them (each poison survives at most one: patches survive blur, blurring
  kernels survive grayscale). So ``shortcut`` = the ``quorum``-th largest of the gaps (acc − acc_view), in accuracy
  points: small on clean data at any dataset size, model or learning rate, large once the model relies on a shortcut.
- **Activation-cluster measurement (ACM)** per block (the measurement of the PST paper's v2, as pst_fast
  reconstructs it): the Fisher trace ratio tr(S_b) / tr(S_t) of the block's outputs grouped by label, after
  average pooling to 1×1 (``acm1/B``) and 4×4 (``acm4/B``, which keeps the spatial layout that patch-like poisons
  live in); ViT token outputs (B, T, D) are averaged over tokens. ``acm4gap/B`` is the block's ACM on the raw
  probe minus its largest ACM over the views: how much of the block's class clustering the views erase.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data import Normalization, Split
from . import transforms


def _gray(x: torch.Tensor) -> torch.Tensor:
    return transforms._gray(x).expand_as(x)


def _blur(x: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([1.0, 2.0, 1.0], device=x.device)
    w = ((k[:, None] * k[None, :]) / 16).expand(x.shape[1], 1, 3, 3).contiguous()
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), w, groups=x.shape[1])


VIEWS = {"gray": _gray, "jpeg": lambda x: transforms.jpeg_batch(x, 10), "blur": _blur}  # (B, C, H, W) in [0, 1] -> same


def fisher_ratio(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """tr(S_b) / tr(S_t) of (N, D) ``features`` grouped by (N,) ``labels``; 0 when the features are constant."""
    f = features.double()
    mu = f.mean(0)
    total = ((f - mu) ** 2).sum()
    counts = torch.bincount(labels, minlength=num_classes).double()
    sums = torch.zeros(num_classes, f.shape[1], dtype=f.dtype, device=f.device).index_add_(0, labels, f)
    seen = counts > 0
    means = sums[seen] / counts[seen, None]
    between = (counts[seen, None] * (means - mu) ** 2).sum()
    return float(between / total) if total > 0 else 0.0


def balanced_indices(labels: np.ndarray, num_classes: int, size: int, seed: int) -> np.ndarray:
    """Sorted indices of ``size // num_classes`` images per class (at least one), drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    per_class = max(1, size // num_classes)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == k))[:per_class] for k in range(num_classes)]))


class Probe:
    """The probe images of the training split ``train`` (rows read by ``train.pixels`` at ``image_size`` px: a tree's evaluation
    view), resident and normalized like the training batches (``norm``), and their ``views``.

    ``scores(model)`` -> {"acc", "acc/<view>", "shortcut", "acm1/<block>", "acm4/<block>", "acm4gap/<block>"} under
    no_grad in eval mode (the caller restores train mode).
    """

    def __init__(self, train: Split, size: int, seed: int, norm: Normalization, device, channels_last: bool,
                 views: tuple[str, ...] = ("gray", "jpeg", "blur"), quorum: int = 2, image_size: int = 0):
        labels = np.asarray(train.labels)
        idx = balanced_indices(labels, train.num_classes, size, seed)
        self.labels = torch.from_numpy(labels[idx]).to(device)
        self.num_classes = train.num_classes
        self.quorum = quorum
        x01 = train.pixels(idx, "cpu", image_size)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.inputs = {name: norm.from01(fn(x01).clamp(0, 1)).to(device).contiguous(memory_format=fmt)
                       for name, fn in {"raw": lambda x: x, **{v: VIEWS[v] for v in views}}.items()}

    @torch.no_grad()
    def scores(self, model, batch_size: int = 500) -> dict[str, float]:
        model.eval()
        names = list(model.blocks.keys())[:-1]
        out: dict[str, float] = {}
        acm4 = {}
        for view, x in self.inputs.items():
            pooled = {(n, g): [] for n in names for g in (1, 4)}
            correct = 0
            for start in range(0, len(self.labels), batch_size):
                feats = model.forward_features(x[start : start + batch_size])
                for name, h in zip(names, feats[:-1]):
                    for g in (1, 4):
                        pooled[(name, g)].append(F.adaptive_avg_pool2d(h.float(), g).flatten(1) if h.dim() == 4 else h.float().mean(1))
                correct += int((feats[-1].argmax(1) == self.labels[start : start + batch_size]).sum())
            out["acc" if view == "raw" else f"acc/{view}"] = correct / len(self.labels)
            for (name, g), v in pooled.items():
                if view == "raw" or g == 4:
                    ratio = fisher_ratio(torch.cat(v), self.labels, self.num_classes)
                    if view == "raw":
                        out[f"acm{g}/{name}"] = ratio
                    else:
                        acm4[name] = max(acm4.get(name, 0.0), ratio)
        views = [k for k in self.inputs if k != "raw"]
        if views:
            gaps = sorted((out["acc"] - out[f"acc/{v}"] for v in views), reverse=True)
            out["shortcut"] = gaps[min(self.quorum, len(gaps)) - 1]
            out.update({f"acm4gap/{n}": out[f"acm4/{n}"] - acm4[n] for n in names})
        return out
