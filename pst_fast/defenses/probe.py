"""Activation-cluster measurement (ACM): how strongly each block's pooled outputs cluster by label.

On a fixed probe subset of the (possibly poisoned) training images, every block's output (B, C, H, W) is
average-pooled to a ``grid``×``grid`` map and flattened to features f (B, C·grid²); the score is the
Fisher trace ratio

    ACM = tr(S_b) / tr(S_t) ∈ [0, 1],   S_b = Σ_k n_k (μ_k − μ)(μ_k − μ)ᵀ,   S_t = Σ_i (f_i − μ)(f_i − μ)ᵀ,

the fraction of the feature variance explained by the class means. A block that has learned a
class-wise shortcut maps each class to a tight cluster (ACM → 1) long before its features carry
semantics; on clean data shallow blocks stay near the value of random features. ``grid=1`` is global
pooling; ``grid=4`` keeps the coarse spatial layout that patch-like poisons (LSP) live in. Token outputs
(B, T, D) of ViT blocks are averaged over tokens.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.format import ImageDataset
from ..ops.augment import augment_batch


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


class Probe:
    """A fixed, class-balanced subset of the training split, resident and normalized like the training batches.

    ``scores(model)`` -> {"acm1/<block>": …, "acm4/<block>": …, "probe_acc": …} under no_grad in eval mode
    (the caller restores train mode).
    """

    def __init__(self, train: ImageDataset, size: int, seed: int, mean, std, device, channels_last: bool):
        labels = np.asarray(train.labels)
        rng = np.random.default_rng(seed)
        per_class = max(1, size // train.num_classes)
        idx = np.concatenate([rng.permutation(np.flatnonzero(labels == k))[:per_class] for k in range(train.num_classes)])
        images = torch.from_numpy(np.asarray(train.images)[np.sort(idx)])
        self.labels = torch.from_numpy(labels[np.sort(idx)]).to(device)
        self.num_classes = train.num_classes
        x = augment_batch(images, torch.arange(len(images)), crop_pad=0, flip=False, mean=tuple(mean), std=tuple(std))
        self.x = x.to(device).contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)

    @torch.no_grad()
    def scores(self, model, batch_size: int = 500) -> dict[str, float]:
        model.eval()
        names = list(model.blocks.keys())
        pooled = {(n, g): [] for n in names[:-1] for g in (1, 4)}
        correct = 0
        for start in range(0, len(self.labels), batch_size):
            outs = model.forward_features(self.x[start : start + batch_size])
            for name, h in zip(names[:-1], outs[:-1]):
                for g in (1, 4):
                    pooled[(name, g)].append(F.adaptive_avg_pool2d(h.float(), g).flatten(1) if h.dim() == 4 else h.float().mean(1))
            correct += int((outs[-1].argmax(1) == self.labels[start : start + batch_size]).sum())
        out = {f"acm{g}/{n}": fisher_ratio(torch.cat(v), self.labels, self.num_classes) for (n, g), v in pooled.items()}
        out["probe_acc"] = correct / len(self.labels)
        return out
