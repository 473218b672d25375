"""Model-free attacks: perturbations drawn from a seeded procedure, no surrogate network.

lsp     linearly separable patches (Yu et al., KDD 2022)
ops     one-pixel shortcut (Wu et al., ICLR 2023)
ar      autoregressive perturbations (Sandoval-Segura et al., NeurIPS 2022)
cuda    convolution-based unlearnable data (Sadasivan et al., CVPR 2023)
random / random-class / region   the noise baselines

Every generator takes the clean training split and returns a :class:`Poison`; all randomness comes
from ``numpy.random.default_rng(seed)``. The L2 attacks publish their images as the official code does
(``rounding``: LSP floors, AR rounds to nearest); ``trunc`` (toward zero, pst_fast's earlier choice, not
official) keeps every published pixel change within the float one, so the L2 budget holds exactly.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.format import ImageDataset, effective_delta, quantize
from ..errors import PstFastError
from ..options import opt
from .base import Poison

ROUNDINGS = ("floor", "nearest", "trunc")


def publish(clean: np.ndarray, delta01: np.ndarray, rounding: str) -> np.ndarray:
    """uint8 images of clean uint8 x (N, H, W, C) plus float δ in [0, 1] units, rounded as ``rounding`` says:

    floor    LSP's official ``clip((x/255 + δ)·255, 0, 255).astype(uint8)`` (float64)
    nearest  AR's official ``clamp(x/255 + δ, 0, 1)·255 + 0.5`` cast to uint8 (float32, as its torch export)
    trunc    clamp(x + trunc(255 δ), 0, 255): rounding toward zero keeps |δ_q| <= |δ| per pixel (not official)
    """
    if rounding == "floor":
        return np.clip((clean.astype(np.float64) / 255.0 + delta01) * 255.0, 0, 255).astype(np.uint8)
    if rounding == "nearest":
        v = np.clip(clean.astype(np.float32) / np.float32(255) + delta01.astype(np.float32), 0, 1)
        return np.clip(v * np.float32(255) + np.float32(0.5), 0, 255).astype(np.uint8)
    if rounding == "trunc":
        return np.clip(clean.astype(np.int32) + np.trunc(delta01 * 255.0).astype(np.int32), 0, 255).astype(np.uint8)
    raise PstFastError(f"--rounding {rounding!r}: expected one of {', '.join(ROUNDINGS)}")


def rounding_opt(official: str):
    """The ``rounding`` parameter of an L2 attack whose official export rounds as ``official`` (trunc: the earlier default)."""
    return opt(official, f"uint8 export: {official} (official), or the others of {', '.join(ROUNDINGS)} (trunc: toward zero, "
               "the L2 budget holds exactly; not official)", ROUNDINGS, later=True, earlier="trunc")


def _l2_normalize(noise: np.ndarray, norm: float) -> np.ndarray:
    """Scale each sample of (N, ...) to L2 norm ``norm``."""
    flat = noise.reshape(len(noise), -1)
    return (flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12) * norm).reshape(noise.shape)


# ---------------------------------------------------------------- LSP

@dataclass
class LSPParams:
    eps: float = opt(6 / 255, "L-inf-equivalent strength; L2 radius = eps * sqrt(H W C) (official default 6/255)")
    patch_size: int = opt(8, "side of each constant patch (official: 8 for 32x32)")
    class_sep: float = opt(10.0, "distance of the class clusters (sklearn make_classification's class_sep)")
    rounding: str = rounding_opt("floor")


def lsp(train: ImageDataset, p: LSPParams, seed: int, **_) -> Poison:
    """One point per sample from its class's Gaussian cluster (clusters at hypercube vertices, as
    sklearn.make_classification builds them), each coordinate filling a patch, scaled to the L2 radius."""
    rng = np.random.default_rng(seed)
    n, (h, w, c) = len(train), train.shape
    gh, gw = -(-h // p.patch_size), -(-w // p.patch_size)
    dim, k = gh * gw * c, train.num_classes
    if k > 2**dim:
        raise PstFastError(f"attack lsp: {k} classes need more than {dim} patch features; use a smaller --patch-size")
    bits = rng.integers(0, 2, size=(k, dim))
    while len(np.unique(bits, axis=0)) < k:                                   # distinct hypercube vertices
        bits = rng.integers(0, 2, size=(k, dim))
    centroids = (2.0 * bits - 1) * p.class_sep                                # (K, dim)
    mixing = rng.uniform(-1, 1, size=(k, dim, dim))                           # a random covariance per class
    y = np.asarray(train.labels)
    points = centroids[y] + np.einsum("nd,nde->ne", rng.standard_normal((n, dim)), mixing[y])
    patches = points.reshape(n, gh, gw, c).repeat(p.patch_size, 1).repeat(p.patch_size, 2)[:, :h, :w, :]
    noise = _l2_normalize(patches, p.eps * np.sqrt(h * w * c))
    images = publish(np.asarray(train.images), noise, p.rounding)
    return Poison(images, effective_delta(np.asarray(train.images), images), {"l2_radius": p.eps * float(np.sqrt(h * w * c))})


# ---------------------------------------------------------------- OPS

@dataclass
class OPSParams:
    pixels: int = opt(1, "pixels changed per image (the paper's one-pixel shortcut uses 1)")
    score: str = opt("official", "official: mean/std of |colour - x| over the class's (image, channel) entries, skipping the "
                     "(position, colour) pairs earlier classes took; channel-sum: mean/std of the per-image L1 change, no "
                     "exclusion (pst_fast's earlier default; not official)", ("official", "channel-sum"), later=True, earlier="channel-sum")


def ops_scores(xs: np.ndarray, colours: np.ndarray, how: str) -> np.ndarray:
    """(H·W, 2^C) search objective of one class's images ``xs`` (n, H, W, C) in [0, 1] for every (position, colour):
    official = mean/std over the (n, C) entries of |colour - x| (``perturb.py:pixel_search``); channel-sum = mean/std over
    the n images of sum_c |colour_c - x_c|."""
    n, h, w, c = xs.shape
    out = np.empty((h * w, len(colours)))
    if how == "official":  # |colour - x| is x or 1 - x per channel: the moments of x give mean and std of every colour
        m, m2 = xs.mean(0), (xs * xs).mean(0)                                       # (H, W, C)
    with np.errstate(divide="ignore", invalid="ignore"):
        for k, col in enumerate(colours):
            if how == "official":
                mean = np.where(col == 1, 1 - m, m).mean(-1)
                var = np.where(col == 1, 1 - 2 * m + m2, m2).mean(-1) - mean**2
                out[:, k] = (mean / np.sqrt(np.maximum(var, 0))).reshape(-1)
            else:
                d = np.abs(col - xs).sum(-1)                                        # (n, H, W)
                out[:, k] = (d.mean(0) / (d.std(0) + 1e-8)).reshape(-1)
    return out


def ops(train: ImageDataset, p: OPSParams, seed: int, **_) -> Poison:
    """Per class: the ``pixels`` (position, colour in {0,1}^C) pairs with the highest :func:`ops_scores`, searched class by
    class; that pixel is set to the colour in every image of the class. Officially a pair taken by an earlier class
    scores 0. Colours are numbered as the official code does (channel 0 the most significant bit)."""
    x = np.asarray(train.images)
    y = np.asarray(train.labels)
    h, w, c = train.shape
    if p.score not in ("official", "channel-sum"):
        raise PstFastError(f"--score {p.score!r}: expected official or channel-sum")
    if p.score == "official":
        colours = ((np.arange(2**c)[:, None] >> np.arange(c - 1, -1, -1)[None, :]) & 1).astype(np.float64)
    else:
        colours = ((np.arange(2**c)[:, None] >> np.arange(c)[None, :]) & 1).astype(np.float32)
    images = x.copy()
    chosen, taken = [], []
    for k in range(train.num_classes):
        xs = x[y == k] / 255.0 if p.score == "official" else x[y == k].astype(np.float32) / 255.0   # (n_k, H, W, C)
        if len(xs) == 0:
            continue
        score = ops_scores(xs, colours, p.score)                                    # (H·W, 2^C)
        if p.score == "official":
            for point, colour in taken:
                score[point, colour] = 0
            ranking = np.unravel_index(np.argsort(score, axis=None), score.shape)
            picks = [(ranking[0][-i - 1], ranking[1][-i - 1]) for i in range(p.pixels)]
        else:
            flat = np.argsort(score.T.reshape(-1))[::-1][: p.pixels]
            picks = [(int(f) % (h * w), int(f) // (h * w)) for f in flat]
        for point, col in picks:
            i, j = divmod(int(point), w)
            images[y == k, i, j, :] = (colours[col] * 255).astype(np.uint8)
            taken.append((int(point), int(col)))
            chosen.append({"class": k, "row": i, "col": j, "colour": colours[col].astype(int).tolist()})
    return Poison(images, None, {"pixels": chosen})


# ---------------------------------------------------------------- AR

AR_COEFFICIENTS = Path(__file__).with_name("ar_coefficients.json")


@dataclass
class ARParams:
    eps: float = opt(1.0, "L2 norm of each image's perturbation (official README: --epsilon 1.0 --p_norm 2)")
    crop: int = opt(4, "generated at (H+crop)x(W+crop), the first crop rows/cols dropped (official: 36 -> 32)")
    max_tries: int = opt(1000, "coefficients=random: redraws of a class's coefficients whose process diverges (see ar())")
    max_peak: float = opt(0.25, "coefficients=random: a draw is degenerate if one value carries more than this fraction of the L2 norm")
    coefficients: str = opt("official", "official: the published coefficients (a search for mutually separable processes; the "
                            "first K of its 10-class set for K <= 10 classes, of its 100-class set for K <= 100); random: drawn "
                            "from the seed with a stability filter only (pst_fast's earlier default; not official)", ("official", "random"),
                            later=True, earlier="random")
    rounding: str = rounding_opt("nearest")


def official_ar_coefficients(classes: int, channels: int) -> np.ndarray:
    """(classes, 3, 3, 3) published AR coefficients (``ar_coefficients.json``: autoregressive-poisoning @bf350b0)."""
    if channels != 3:
        raise PstFastError(f"attack ar: the published coefficients are for 3 channels, the data has {channels}; use coefficients=random")
    table = json.loads(AR_COEFFICIENTS.read_text())
    key = "cifar10" if classes <= 10 else "cifar100"
    if classes > len(table[key]):
        raise PstFastError(f"attack ar: {classes} classes; the published coefficients cover at most 100; use coefficients=random")
    return np.asarray(table[key][:classes], dtype=np.float64)


def _ar_signal(coef: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Run the causal 3x3 AR recursion on start (n, C, H, W) in place: each pixel from its 8 predecessors."""
    h, w = start.shape[2:]
    for i in range(h - 2):
        for j in range(w - 2):
            window = start[:, :, i : i + 3, j : j + 3]                               # (n, C, 3, 3); [2, 2] has coef 0
            start[:, :, i + 2, j + 2] = np.einsum("ncab,cab->nc", window, coef)
    return start


def _ar_stable(coef, start, p: "ARParams", sig=None) -> bool:
    """No NaN/Inf and no value above ``max_peak`` of its sample's L2 norm (an exploding process)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if sig is None:
            sig = _ar_signal(coef, start)[:, :, p.crop :, p.crop :]
        flat = sig.reshape(len(sig), int(np.prod(sig.shape[1:])))  # explicit: a class may have no images
        norms = np.linalg.norm(flat, axis=1)
        return bool(np.isfinite(flat).all() and np.isfinite(norms).all() and (np.abs(flat).max(1) <= p.max_peak * norms).all())


def ar(train: ImageDataset, p: ARParams, seed: int, **_) -> Poison:
    """Per class, per channel, a causal 3x3 AR filter (entry [2, 2] = 0, summing to 1): the published coefficients
    (``coefficients=official``), or b ~ N(0,1) normalized, redrawn while the process explodes (NaN/Inf, or one pixel
    holding more than ``max_peak`` of the norm — the whole budget in a corner). Every image gets a fresh sample of its
    class's process (Gaussian start), cropped and scaled to L2 = eps."""
    rng = np.random.default_rng(seed)
    h, w, c = train.shape
    y = np.asarray(train.labels)
    noise = np.zeros((len(train), c, h, w))
    if p.coefficients not in ("official", "random"):
        raise PstFastError(f"--coefficients {p.coefficients!r}: expected official or random")
    official = official_ar_coefficients(train.num_classes, c) if p.coefficients == "official" else None
    coefs = []
    for k in range(train.num_classes):
        idx = np.flatnonzero(y == k)
        if official is not None:
            coef = official[k]
            sig = _ar_signal(coef, rng.standard_normal((len(idx), c, h + p.crop, w + p.crop)))[:, :, p.crop :, p.crop :]
        else:
            coef, sig = _random_ar_class(rng, p, len(idx), c, h, w, k)
        coefs.append(coef.tolist())
        noise[idx] = sig
    noise = _l2_normalize(noise, p.eps).transpose(0, 2, 3, 1)
    images = publish(np.asarray(train.images), noise, p.rounding)
    return Poison(images, effective_delta(np.asarray(train.images), images), {"coefficients": coefs, "coefficient_source": p.coefficients})


def _random_ar_class(rng, p: ARParams, n: int, c: int, h: int, w: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(coefficients (C, 3, 3), signal (n, C, H, W)) of a stable process drawn for class ``k`` (``coefficients=random``)."""
    for _ in range(p.max_tries):  # a cheap probe on 8 samples first, then the whole class
        coef = rng.standard_normal((c, 3, 3))
        coef[:, 2, 2] = 0
        coef /= coef.sum(axis=(1, 2), keepdims=True)
        if not _ar_stable(coef, rng.standard_normal((8, c, h + p.crop, w + p.crop)), p):
            continue
        sig = _ar_signal(coef, rng.standard_normal((n, c, h + p.crop, w + p.crop)))[:, :, p.crop :, p.crop :]
        if _ar_stable(coef, None, p, sig):
            return coef, sig
    raise PstFastError(f"attack ar: no stable AR process for class {k} in {p.max_tries} draws")


# ---------------------------------------------------------------- CUDA

@dataclass
class CUDAParams:
    blur: float = opt(0.3, "kernel entries ~ U(0, blur) (official blur_parameter 0.3 for CIFAR)")
    kernel_size: int = opt(3, "side of each blur kernel")
    center: float = opt(1.0, "one random entry of each kernel is set to this value")


def cuda(train: ImageDataset, p: CUDAParams, seed: int, **_) -> Poison:
    """Per class a random k x k kernel (the seed is the key), shared by the channels; each image is
    convolved with its class's kernel (zero padding) and renormalized by its maximum."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    k, c = p.kernel_size, train.shape[2]
    kernels = rng.uniform(0, p.blur, size=(train.num_classes, k, k))
    pos = rng.integers(0, k, size=(train.num_classes, 2))
    kernels[np.arange(train.num_classes), pos[:, 0], pos[:, 1]] = p.center
    x = torch.from_numpy(np.array(train.images)).permute(0, 3, 1, 2).double() / 255.0
    y = torch.from_numpy(np.array(train.labels))
    out = torch.empty_like(x)
    for cls in range(train.num_classes):
        m = y == cls
        weight = torch.from_numpy(kernels[cls]).expand(c, 1, k, k)
        out[m] = F.conv2d(x[m], weight, padding=k // 2, groups=c)
    out = out / out.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    images = (out * 255).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    return Poison(images, effective_delta(np.asarray(train.images), images), {"kernels": kernels.tolist()})


# ---------------------------------------------------------------- noise baselines

@dataclass
class NoiseParams:
    eps: float = opt(8 / 255, "L-inf budget")


@dataclass
class RegionParams:
    eps: float = opt(8 / 255, "L-inf budget")
    regions: int = opt(4, "the image is split into regions x regions blocks, each with its own ±eps sign per class")


def random_noise(train: ImageDataset, p: NoiseParams, seed: int, **_) -> Poison:
    """Sample-wise uniform noise in [-eps, eps]."""
    rng = np.random.default_rng(seed)
    delta = rng.uniform(-p.eps, p.eps, size=np.asarray(train.images).shape)
    images = quantize(np.asarray(train.images), delta)
    return Poison(images, effective_delta(np.asarray(train.images), images))


def _class_pattern(train: ImageDataset, pattern: np.ndarray) -> Poison:
    """Add a per-class float pattern (K,H,W,C); δ is stored per sample (clamping makes it sample-dependent)."""
    clean = np.asarray(train.images)
    images = quantize(clean, pattern[np.asarray(train.labels)])
    return Poison(images, effective_delta(clean, images))


def random_class(train: ImageDataset, p: NoiseParams, seed: int, **_) -> Poison:
    """Class-wise uniform noise in [-eps, eps]: one pattern per class."""
    rng = np.random.default_rng(seed)
    return _class_pattern(train, rng.uniform(-p.eps, p.eps, size=(train.num_classes, *train.shape)))


def region(train: ImageDataset, p: RegionParams, seed: int, **_) -> Poison:
    """Class-wise region patterns: the image is cut into regions x regions blocks and each block of each
    class gets a random ±eps value per channel."""
    rng = np.random.default_rng(seed)
    h, w, c = train.shape
    signs = rng.choice([-1.0, 1.0], size=(train.num_classes, p.regions, p.regions, c)) * p.eps
    rows = np.minimum(np.arange(h) * p.regions // h, p.regions - 1)
    cols = np.minimum(np.arange(w) * p.regions // w, p.regions - 1)
    return _class_pattern(train, signs[:, rows][:, :, cols])
