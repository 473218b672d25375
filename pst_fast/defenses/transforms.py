"""Batched image transforms of the baseline defenses.

Two kinds:

- **dataset transforms** (ISS, Liu et al. 2023, "Image Shortcut Squeezing"): uint8 (N, H, W, C) -> uint8,
  applied once before training (``Hooks.prepare_train``): ``jpeg``, ``grayscale``, ``bit_depth``.
- **batch transforms**: float (B, C, H, W) tensors on the training device, every draw from a
  ``torch.Generator`` (so runs are reproducible): ``cutout``, ``mix_pairs`` (mixup / cutmix), and the UEraser
  (Qin et al. 2023) chain ``plasma_brightness``, ``plasma_contrast``, ``channel_shuffle``, ``trivial_augment``,
  which work on images in [0, 1].
"""
from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import PstFastError

# ---------------------------------------------------------------------- dataset transforms (uint8 NHWC)


def jpeg(images: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode every image with libjpeg (Pillow) at ``quality`` (1..95), as ISS does."""
    out = np.empty_like(images)
    gray = images.shape[-1] == 1
    for i, im in enumerate(images):
        buf = io.BytesIO()
        Image.fromarray(im[..., 0] if gray else im).save(buf, "JPEG", quality=quality)
        buf.seek(0)
        dec = np.asarray(Image.open(buf))
        out[i] = dec[..., None] if gray else dec
    return out


def grayscale(images: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma (Pillow's ``convert('L')`` weights, rounded), repeated over the channels."""
    if images.shape[-1] == 1:
        return images.copy()
    w = np.array([299, 587, 114], dtype=np.uint32)
    luma = ((images[..., :3].astype(np.uint32) * w).sum(-1) + 500) // 1000
    return np.repeat(luma.astype(np.uint8)[..., None], images.shape[-1], axis=-1)


def bit_depth(images: np.ndarray, bits: int, method: str = "posterize") -> np.ndarray:
    """Reduce every channel to ``bits`` bits. ``posterize`` keeps the top bits (torchvision's ``RandomPosterize``, which ISS
    uses: {0, 64, 128, 192} at 2 bits); ``round`` maps to the nearest of 2**bits levels spread over 0..255 (Feature
    Squeezing's reduction: {0, 85, 170, 255}; not ISS's)."""
    if method == "posterize":
        return images & np.uint8((0xFF << (8 - bits)) & 0xFF)
    if method != "round":
        raise PstFastError(f"bit-depth method {method!r}: expected posterize or round")
    levels = (1 << bits) - 1
    q = np.rint(images.astype(np.float32) * (levels / 255.0))
    return np.rint(q * (255.0 / levels)).astype(np.uint8)


def _quant_tables(quality: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """IJG luminance and chrominance quantization tables scaled to ``quality`` (libjpeg's rule)."""
    lum = torch.tensor([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                        14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
                        49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=torch.float32)
    chrom = torch.full((64,), 99.0)
    chrom[[0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 24, 25]] = torch.tensor([17.0, 18, 24, 47, 18, 21, 26, 66, 24, 26, 56, 47, 66])
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return tuple(((t * scale + 50) // 100).clamp(1, 255).view(8, 8).to(device) for t in (lum, chrom))


def _dct_matrix(device) -> torch.Tensor:
    k = torch.arange(8, dtype=torch.float32)
    d = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d.to(device)


def _jpeg_plane(p: torch.Tensor, q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Quantize the 8x8 DCT blocks of planes (B, H, W) in 0..255 (H, W multiples of 8) with table ``q``."""
    B, H, W = p.shape
    blocks = (p - 128).view(B, H // 8, 8, W // 8, 8).transpose(2, 3)
    coef = d @ blocks @ d.T
    coef = torch.round(coef / q) * q
    return (d.T @ coef @ d).transpose(2, 3).reshape(B, H, W) + 128


def jpeg_batch(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Batched JPEG round trip of (B, 3|1, H, W) images in [0, 1] on their device: JFIF YCbCr, 4:2:0 chroma,
    8x8 DCT quantized with the IJG tables at ``quality``; close to libjpeg (rounding and chroma upsampling differ)."""
    B, C, H, W = x.shape
    ph, pw = -H % 16, -W % 16
    v = F.pad(x.float() * 255, (0, pw, 0, ph), mode="replicate")
    ql, qc = _quant_tables(quality, x.device)
    d = _dct_matrix(x.device)
    if C == 1:
        return (_jpeg_plane(v[:, 0], ql, d)[:, None, :H, :W].round() / 255).clamp(0, 1)
    r, g, b = v[:, 0], v[:, 1], v[:, 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    y = _jpeg_plane(y, ql, d)
    chroma = F.avg_pool2d(torch.stack([cb, cr], 1), 2)
    chroma = torch.stack([_jpeg_plane(chroma[:, i], qc, d) for i in range(2)], 1)
    cb, cr = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False).unbind(1)
    rgb = torch.stack([y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128), y + 1.772 * (cb - 128)], 1)
    return (rgb[:, :, :H, :W].round() / 255).clamp(0, 1)


# ---------------------------------------------------------------------- batch transforms (float NCHW)


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, device=device)


def _seed(g: torch.Generator, device) -> int:
    """A seed for a host-side draw, taken from ``g`` (keeps the run reproducible from one seed)."""
    return int(torch.randint(0, 1 << 62, (1,), generator=g, device=device))


def _coin(n: int, p: float, g: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) < p


def cutout(x: torch.Tensor, size: int, g: torch.Generator, fill: float = 0.0) -> torch.Tensor:
    """DeVries & Taylor 2017: one ``size`` x ``size`` square per image (centre uniform, may leave the image) set to ``fill``."""
    B, _, H, W = x.shape
    cy = torch.randint(0, H, (B, 1, 1), generator=g, device=x.device)
    cx = torch.randint(0, W, (B, 1, 1), generator=g, device=x.device)
    ys = torch.arange(H, device=x.device).view(1, H, 1)
    xs = torch.arange(W, device=x.device).view(1, 1, W)
    inside = (ys >= cy - size // 2) & (ys < cy - size // 2 + size) & (xs >= cx - size // 2) & (xs < cx - size // 2 + size)
    return x.masked_fill(inside[:, None], fill)


def mix_pairs(x: torch.Tensor, alpha: float, mode: str, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mixup (Zhang et al. 2018) or CutMix (Yun et al. 2019) of the batch with a permutation of itself.

    Returns (mixed batch, permutation, λ): the loss is λ·CE(out, y) + (1-λ)·CE(out, y[perm]). λ ~ Beta(α, α),
    one per batch; for cutmix it is corrected to the exact area kept.
    """
    B, _, H, W = x.shape
    rng = np.random.default_rng(_seed(g, x.device))  # the batch's scalars in one host draw (one sync per batch)
    lam, cy, cx = float(rng.beta(alpha, alpha)), int(rng.integers(H)), int(rng.integers(W))
    perm = torch.randperm(B, generator=g, device=x.device)
    if mode == "mixup":
        return x * lam + x[perm] * (1 - lam), perm, lam
    cut = math.sqrt(1 - lam)
    h, w = int(H * cut), int(W * cut)
    y0, y1 = max(cy - h // 2, 0), min(cy + h // 2, H)
    x0, x1 = max(cx - w // 2, 0), min(cx + w // 2, W)
    out = x.clone()
    out[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]
    return out, perm, 1 - (y1 - y0) * (x1 - x0) / (H * W)


# ---------------------------------------------------------------------- UEraser chain (images in [0, 1])


def plasma(batch: int, h: int, w: int, roughness: torch.Tensor, g: torch.Generator, device) -> torch.Tensor:
    """Fractal "plasma" noise (B, 1, H, W) in [0, 1]: octaves of bilinear value noise, the amplitude of each
    finer octave multiplied by the per-image ``roughness`` (as the diamond-square algorithm does)."""
    out = torch.zeros(batch, 1, h, w, device=device)
    amp = torch.ones(batch, 1, 1, 1, device=device)
    for octave in range(1, max(1, math.ceil(math.log2(max(h, w)))) + 1):
        s = 2 ** octave + 1
        noise = torch.rand(batch, 1, s, s, generator=g, device=device)
        out += amp * F.interpolate(noise, size=(h, w), mode="bilinear", align_corners=True)
        amp = amp * roughness.view(-1, 1, 1, 1)
    lo = out.amin((2, 3), keepdim=True)
    hi = out.amax((2, 3), keepdim=True)
    return (out - lo) / (hi - lo).clamp_min(1e-6)


def plasma_brightness(x: torch.Tensor, g: torch.Generator, p: float = 0.5, roughness=(0.3, 0.7), intensity=(0.5, 1.0)) -> torch.Tensor:
    """Add a plasma field, centred, of per-image ``intensity`` to a random ``p`` of the images (kornia's RandomPlasmaBrightness idea)."""
    B, _, H, W = x.shape
    field = plasma(B, H, W, _uniform(B, *roughness, g, x.device), g, x.device) - 0.5
    shift = field * _uniform(B, *intensity, g, x.device).view(-1, 1, 1, 1) * _coin(B, p, g, x.device).view(-1, 1, 1, 1)
    return (x + shift).clamp_(0, 1)


def plasma_contrast(x: torch.Tensor, g: torch.Generator, p: float = 0.5, roughness=(0.3, 0.7)) -> torch.Tensor:
    """Scale each pixel's distance to the image mean by a plasma field in [0, 2] for a random ``p`` of the images."""
    B, _, H, W = x.shape
    factor = 2 * plasma(B, H, W, _uniform(B, *roughness, g, x.device), g, x.device)
    factor = torch.where(_coin(B, p, g, x.device).view(-1, 1, 1, 1), factor, torch.ones_like(factor))
    mean = x.mean((1, 2, 3), keepdim=True)
    return (mean + (x - mean) * factor).clamp_(0, 1)


def channel_shuffle(x: torch.Tensor, g: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Permute the channels of a random ``p`` of the images (one random permutation each)."""
    B, C = x.shape[:2]
    perm = torch.argsort(torch.rand(B, C, generator=g, device=x.device), dim=1)
    perm = torch.where(_coin(B, p, g, x.device)[:, None], perm, torch.arange(C, device=x.device).expand(B, C))
    return x.gather(1, perm.view(B, C, 1, 1).expand_as(x))


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def _blend(base: torch.Tensor, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return base + f.view(-1, 1, 1, 1) * (x - base)


def _sharpen_base(x: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([[1.0, 1, 1], [1, 5, 1], [1, 1, 1]], device=x.device, dtype=x.dtype) / 13
    C = x.shape[1]
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k.expand(C, 1, 3, 3), groups=C)


def _equalize(x: torch.Tensor) -> torch.Tensor:
    """Per-channel histogram equalization (Pillow's ImageOps.equalize rule), batched."""
    B, C, H, W = x.shape
    v = (x * 255).round_().long().reshape(B * C, H * W)
    hist = torch.zeros(B * C, 256, device=x.device).scatter_add_(1, v, torch.ones_like(v, dtype=torch.float))
    last = hist.gather(1, (v.amax(1, keepdim=True)))  # count of the largest value present
    step = ((H * W - last) / 255).floor_()
    lut = ((hist.cumsum(1) - hist + (step / 2).floor_()) / step.clamp_min(1)).floor_().clamp_(0, 255)
    out = lut.gather(1, v).view(B, C, H, W) / 255
    return torch.where((step == 0).view(B, C, 1, 1), x, out)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _geometric(kind: str, amount: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """(n, 2, 3) sampling matrices in normalized coordinates for per-image ``amount``: radians (rotate), the shear
    factor (shear_x/y) or pixels (translate_x/y)."""
    theta = torch.zeros(len(amount), 2, 3, device=amount.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    if kind == "rotate":
        a = amount
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = a.cos(), -a.sin(), a.sin(), a.cos()
    elif kind == "shear_x":
        theta[:, 0, 1] = amount
    elif kind == "shear_y":
        theta[:, 1, 0] = amount
    elif kind == "translate_x":
        theta[:, 0, 2] = amount * 2 / W
    else:
        theta[:, 1, 2] = amount * 2 / H
    return theta


def _color(kind: str, x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """One colour op on images ``x`` with per-image ``value``: the blend factor (brightness, color, contrast, sharpness;
    1 = unchanged), the bits kept (posterize, long) or the threshold (solarize); autocontrast and equalize take none."""
    if kind == "brightness":
        return _blend(torch.zeros_like(x), x, value)
    if kind == "color":
        return _blend(_gray(x).expand_as(x), x, value)
    if kind == "contrast":
        return _blend(_gray(x).mean((1, 2, 3), keepdim=True).expand_as(x), x, value)
    if kind == "sharpness":
        return _blend(_sharpen_base(x), x, value)
    if kind == "posterize":
        bits = value.view(-1, 1, 1, 1)
        mask = (255 >> (8 - bits)) << (8 - bits)
        return ((x * 255).round().long() & mask).float() / 255
    if kind == "solarize":
        return torch.where(x >= value.view(-1, 1, 1, 1), 1 - x, x)
    if kind == "autocontrast":
        lo, hi = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
        return torch.where(hi > lo, (x - lo) / (hi - lo).clamp_min(1e-6), x)
    if kind == "equalize":
        return _equalize(x)
    return x


def _apply(kind: str, x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Op ``kind`` on ``x`` at per-image ``value`` (see :func:`_geometric` and :func:`_color`), clamped to [0, 1]."""
    H, W = x.shape[2:]
    return (_affine(x, _geometric(kind, value, H, W)) if kind in GEOMETRIC_OPS else _color(kind, x, value)).clamp(0, 1)


TRIVIAL_OPS = ("identity", "brightness", "color", "contrast", "sharpness", "posterize", "solarize", "autocontrast",
               "equalize", "rotate", "shear_x", "shear_y", "translate_x", "translate_y")
GEOMETRIC_OPS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
# kornia's TrivialAugment default policy (kornia/augmentation/auto/trivial_augment, as UEraser's official code uses it):
# op -> (low, high) of the per-image magnitude: degrees, bits kept, threshold, blend factor, shear factor, fraction of the side
KORNIA_TRIVIAL_POLICY = {"autocontrast": None, "equalize": None, "rotate": (-30.0, 30.0), "posterize": (0.0, 4.0),
                         "solarize": (0.0, 1.0), "contrast": (0.1, 1.9), "brightness": (0.1, 1.9), "sharpness": (0.1, 1.9),
                         "shear_x": (-0.3, 0.3), "shear_y": (-0.3, 0.3), "translate_x": (-0.5, 0.5), "translate_y": (-0.5, 0.5)}
TRIVIAL_POLICIES = ("kornia", "wide")


def _wide_value(kind: str, level: torch.Tensor, sign: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """TrivialAugment-Wide's value of op ``kind`` for magnitude levels in [0, 1] and signs ±1."""
    m = level * sign
    if kind == "rotate":
        return m * math.radians(135)
    if kind in ("shear_x", "shear_y"):
        return m * 0.99
    if kind in ("translate_x", "translate_y"):
        return m * 32
    if kind == "posterize":
        return (8 - (level * 6).round()).long()
    if kind == "solarize":
        return 1 - level
    return 1 + 0.99 * m


def _kornia_value(kind: str, u: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """The value of op ``kind`` of :data:`KORNIA_TRIVIAL_POLICY` for uniform draws ``u`` in [0, 1)."""
    bounds = KORNIA_TRIVIAL_POLICY[kind]
    if bounds is None:
        return u
    v = bounds[0] + (bounds[1] - bounds[0]) * u
    if kind == "rotate":
        return v * (math.pi / 180)
    if kind == "posterize":
        return v.long()  # floor: 0..3 bits kept (0 = black), as kornia's magnitude_fn
    if kind == "translate_x":
        return v * W
    if kind == "translate_y":
        return v * H
    return v


def trivial_augment(x: torch.Tensor, g: torch.Generator, policy: str = "kornia") -> torch.Tensor:
    """TrivialAugment (Müller & Hutter 2021), batched.

    ``kornia`` (UEraser's official ``K.auto.TrivialAugment()``): one op for the whole batch, drawn uniformly from
    :data:`KORNIA_TRIVIAL_POLICY`, at a magnitude drawn uniformly from its range for each image.
    ``wide`` (TrivialAugment-Wide; pst_fast's earlier default, not UEraser's): each image gets one op drawn uniformly from
    ``TRIVIAL_OPS`` at a magnitude level drawn uniformly from 31 bins (and a random sign)."""
    B, _, H, W = x.shape
    if policy == "kornia":
        ops = list(KORNIA_TRIVIAL_POLICY)
        kind = ops[int(torch.randint(0, len(ops), (1,), generator=g, device=x.device))]
        u = torch.rand(B, generator=g, device=x.device)
        return _apply(kind, x, _kornia_value(kind, u, H, W)).to(x.dtype)
    if policy != "wide":
        raise PstFastError(f"TrivialAugment policy {policy!r}: expected one of {', '.join(TRIVIAL_POLICIES)}")
    op = torch.randint(0, len(TRIVIAL_OPS), (B,), generator=g, device=x.device)
    level = torch.randint(0, 31, (B,), generator=g, device=x.device).float() / 30
    sign = torch.randint(0, 2, (B,), generator=g, device=x.device).float() * 2 - 1
    out = x.clone()
    for k, kind in enumerate(TRIVIAL_OPS[1:], start=1):
        rows = (op == k).nonzero().flatten()  # per-op subsets: 2.5 ms vs 16 ms (all ops on the whole batch), B=128, CPU
        if len(rows) == 0:
            continue
        out[rows] = _apply(kind, x[rows], _wide_value(kind, level[rows], sign[rows], H, W)).to(out.dtype)
    return out


def ueraser(x: torch.Tensor, g: torch.Generator, policy: str = "kornia") -> torch.Tensor:
    """The UEraser chain on a batch in [0, 1]: plasma brightness, plasma contrast, channel shuffle (p 0.5 each),
    then TrivialAugment of ``policy``."""
    return trivial_augment(channel_shuffle(plasma_contrast(plasma_brightness(x, g), g), g), g, policy)


def gallery(images: np.ndarray, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Every transform applied to the same uint8 (n, H, W, C) images: (rows·n images, row names), for a picture."""
    g = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255
    rows = {"original": images, "iss-jpeg": jpeg(images, 10), "iss-gray": grayscale(images), "iss-bdr": bit_depth(images, 2)}
    batch = {"cutout": lambda: cutout(x, 16, g, fill=0.5), "mixup": lambda: mix_pairs(x, 1.0, "mixup", g)[0],
             "cutmix": lambda: mix_pairs(x, 1.0, "cutmix", g)[0], "ueraser": lambda: ueraser(x, g), "ueraser ": lambda: ueraser(x, g)}
    for name, fn in batch.items():
        rows[name] = (fn().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    return np.concatenate(list(rows.values())), [n.strip() for n in rows]
