"""augment_batch: the fused data path (gather + int8 δ + crop/pad + flip + normalize), three backends.

Convention shared by all backends: output pixel (b, c, y, x) reads source row ``sy = y + dy - pad`` and
column ``sx = xf + dx - pad`` with ``xf = W-1-x`` when flipped (crop, then flip the crop). Outside the image,
zero padding (torchvision ``RandomCrop(padding=pad)``) makes the pixel 0, and it stays 0 with δ; reflect padding
(``F.pad(mode="reflect")`` of the poisoned image, as airbench's translations) reads the mirrored source instead:
``s < 0 -> -s``, ``s >= n -> 2(n-1) - s`` (``pad < n``). A pixel read from the image is
``v = clamp(img[idx[b], sy, sx, c] + δ[delta_rows[b], sy, sx, c], 0, 255)`` in integers, and the
float output is ``v * scale[c] + bias[c]`` (``scale = 1/(255 std)``, ``bias = -mean/std``); a uint8 output
is ``v`` itself. The output is (B, C, H, W), NCHW-contiguous or in ``torch.channels_last`` memory format.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .. import backend
from ..errors import PstFastError

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
OUT_DTYPES = (torch.float32, torch.bfloat16, torch.uint8)
LAYOUTS = ("nchw", "channels_last")
PAD_MODES = ("zero", "reflect")


def normalization(mean: Sequence[float], std: Sequence[float], device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, bias) float32 (C,) such that ``v * scale + bias == (v / 255 - mean) / std`` for a pixel v in 0..255."""
    m = torch.tensor(tuple(mean), dtype=torch.float64)
    s = torch.tensor(tuple(std), dtype=torch.float64)
    if m.dim() != 1 or m.shape != s.shape or not bool((s > 0).all()):
        raise PstFastError(f"mean={tuple(mean)} std={tuple(std)}: expected two equally long sequences with std > 0")
    return (1.0 / (255.0 * s)).float().to(device), (-m / s).float().to(device)


def draw_crop_flip(batch: int, crop_pad: int, flip: bool, generator: torch.Generator | None, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crop offsets ``shifts`` (B, 2) int64 in [0, 2 crop_pad] and ``flips`` (B,) uint8 in {0, 1}, on ``device``.

    Draws from ``generator`` (which must live on ``device``) only what is used: no shifts when
    ``crop_pad == 0``, no flips when ``flip`` is False.
    """
    if crop_pad > 0:
        shifts = torch.randint(0, 2 * crop_pad + 1, (batch, 2), generator=generator, device=device)
    else:
        shifts = torch.zeros(batch, 2, dtype=torch.int64, device=device)
    if flip:
        flips = torch.randint(0, 2, (batch,), generator=generator, device=device, dtype=torch.uint8)
    else:
        flips = torch.zeros(batch, dtype=torch.uint8, device=device)
    return shifts, flips


def _memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def _mirror(s: torch.Tensor, n: int) -> torch.Tensor:
    """Source indices ``s`` in [-(n-1), 2(n-1)] reflected into [0, n) about the edge pixels (``F.pad`` reflect)."""
    return torch.where(s < 0, -s, torch.where(s >= n, 2 * (n - 1) - s, s))


def augment_reference(images, idx, delta, delta_rows, shifts, flips, pad: int, reflect: bool, scale, bias, out_dtype,
                      channels_last: bool):
    """Plain-torch reference of the op: vectorized gathers, no per-sample Python. Returns (B, C, H, W)."""
    H, W, C = images.shape[1:]
    dev = images.device
    xs = torch.arange(W, device=dev)
    xf = torch.where(flips.bool()[:, None], W - 1 - xs, xs)                          # (B, W)
    sy = torch.arange(H, device=dev) + shifts[:, :1].long() - pad                     # (B, H)
    sx = xf + shifts[:, 1:].long() - pad                                             # (B, W)
    if reflect:
        sy, sx = _mirror(sy, H), _mirror(sx, W)
    inside = ((sy >= 0) & (sy < H))[:, :, None] & ((sx >= 0) & (sx < W))[:, None, :]  # (B, H, W)
    pixel = (sy.clamp(0, H - 1)[:, :, None] * W + sx.clamp(0, W - 1)[:, None, :]).view(-1)  # (B*H*W,) within an image
    rows = (idx[:, None] * (H * W)).expand(-1, H * W).reshape(-1)
    v = images.view(-1, C).index_select(0, rows + pixel).to(torch.int16)              # (B*H*W, C)
    if delta is not None:
        drows = (delta_rows[:, None] * (H * W)).expand(-1, H * W).reshape(-1)
        v = v.add_(delta.view(-1, C).index_select(0, drows + pixel)).clamp_(0, 255)
    v = v.masked_fill_(~inside.view(-1, 1), 0).view(-1, H, W, C).permute(0, 3, 1, 2)  # (B, C, H, W) view
    v = v.contiguous(memory_format=_memory_format(channels_last))  # elementwise ops below keep this layout
    if out_dtype == torch.uint8:
        return v.to(torch.uint8)
    return (v.to(torch.float32) * scale[:, None, None] + bias[:, None, None]).to(out_dtype)


def _check(images, idx, delta, delta_rows, shifts, flips, pad, reflect, scale, bias, out_dtype):
    """Raise PstFastError (one line) on anything the fast paths would misread."""
    def fail(msg):
        raise PstFastError(f"augment_batch: {msg}")

    if images.dtype != torch.uint8 or images.dim() != 4 or not images.is_contiguous():
        fail(f"images must be a contiguous uint8 (N, H, W, C) tensor, got {images.dtype} {tuple(images.shape)}")
    N, H, W, C = images.shape
    B = idx.shape[0] if idx.dim() == 1 else -1
    if idx.dtype != torch.int64 or B < 0:
        fail(f"idx must be int64 (B,), got {idx.dtype} {tuple(idx.shape)}")
    if not 0 <= pad <= min(H, W):
        fail(f"crop_pad={pad} must lie in [0, {min(H, W)}] for {H}x{W} images")
    if reflect and pad >= min(H, W):
        fail(f"crop_pad={pad} with reflect padding must be below {min(H, W)} for {H}x{W} images (one mirror image per side)")
    if shifts.dtype not in (torch.int32, torch.int64) or shifts.shape != (B, 2):
        fail(f"shifts must be int32/int64 ({B}, 2), got {shifts.dtype} {tuple(shifts.shape)}")
    if flips.dtype not in (torch.bool, torch.uint8) or flips.shape != (B,):
        fail(f"flips must be bool/uint8 ({B},), got {flips.dtype} {tuple(flips.shape)}")
    if out_dtype not in OUT_DTYPES:
        fail(f"out_dtype must be one of {', '.join(map(str, OUT_DTYPES))}, got {out_dtype}")
    if scale.dtype != torch.float32 or bias.dtype != torch.float32 or scale.shape != (C,) or bias.shape != (C,):
        fail(f"scale and bias (from mean/std) must be float32 with {C} entries, one per channel")
    if delta is not None:
        if delta.dtype != torch.int8 or delta.dim() != 4 or delta.shape[1:] != images.shape[1:] or not delta.is_contiguous():
            fail(f"delta must be a contiguous int8 (M, {H}, {W}, {C}) tensor, got {delta.dtype} {tuple(delta.shape)}")
        if delta_rows is None or delta_rows.dtype != torch.int64 or delta_rows.shape != (B,):
            fail(f"delta_rows must be int64 ({B},) when delta is given")
    tensors = {"idx": idx, "shifts": shifts, "flips": flips, "scale": scale, "bias": bias, "delta": delta, "delta_rows": delta_rows}
    for name, t in tensors.items():
        if t is not None and t.device != images.device:
            fail(f"{name} is on {t.device} but images are on {images.device}")
    if B > 0 and images.device.type == "cpu":  # value ranges; skipped on GPUs, where they would cost a host sync per batch
        if int(idx.min()) < 0 or int(idx.max()) >= N:
            fail(f"idx out of range [0, {N})")
        if int(shifts.min()) < 0 or int(shifts.max()) > 2 * pad:
            fail(f"shifts must lie in [0, {2 * pad}] for crop_pad={pad}")
        if delta is not None and (int(delta_rows.min()) < 0 or int(delta_rows.max()) >= delta.shape[0]):
            fail(f"delta_rows out of range [0, {delta.shape[0]}) (per-class delta needs labels in [0, M))")


def _empty_out(images, B, out_dtype, channels_last):
    N, H, W, C = images.shape
    return torch.empty((B, C, H, W), dtype=out_dtype, device=images.device, memory_format=_memory_format(channels_last))


def _augment_cpu(images, idx, delta, delta_rows, shifts, flips, pad, reflect, scale, bias, out_dtype, channels_last):
    B, (_, H, W, C) = idx.shape[0], images.shape
    if out_dtype == torch.uint8:
        lut = torch.arange(256, dtype=torch.uint8).repeat(C, 1)
    else:  # the reference's arithmetic, tabulated for v = 0..255: bitwise-identical outputs
        lut = (torch.arange(256, dtype=torch.float32) * scale[:, None] + bias[:, None]).to(out_dtype)
    out = _empty_out(images, B, out_dtype, channels_last)
    idx, shifts, flips = idx.contiguous(), shifts.to(torch.int64).contiguous(), flips.to(torch.uint8).contiguous()
    rows = delta_rows.contiguous() if delta is not None else None
    backend.native().augment(
        images.data_ptr(), idx.data_ptr(), 0 if delta is None else delta.data_ptr(), 0 if rows is None else rows.data_ptr(),
        shifts.data_ptr(), flips.data_ptr(), lut.data_ptr(), out.data_ptr(), B, H, W, C, pad, reflect, out.element_size(), channels_last,
    )
    return out


def _augment_triton(images, idx, delta, delta_rows, shifts, flips, pad, reflect, scale, bias, out_dtype, channels_last):
    from ..kernels.augment import augment_triton

    out = _empty_out(images, idx.shape[0], out_dtype, channels_last)
    augment_triton(images, idx, delta, delta_rows, shifts, flips, pad, reflect, scale, bias, out)
    return out


_IMPLS = {"cpu": _augment_cpu, "triton": _augment_triton, "reference": augment_reference}


@torch.library.custom_op("pst_fast::augment_batch", mutates_args=())
def augment_op(images: torch.Tensor, idx: torch.Tensor, delta: torch.Tensor | None, delta_rows: torch.Tensor | None,
               shifts: torch.Tensor, flips: torch.Tensor, pad: int, reflect: bool, scale: torch.Tensor, bias: torch.Tensor,
               out_dtype: torch.dtype, channels_last: bool) -> torch.Tensor:
    """The low-level fused op, all randomness already drawn; runs on the backend ``backend.choose(images)`` picks.

    images uint8 (N,H,W,C); idx int64 (B,); delta int8 (M,H,W,C) or None with delta_rows int64 (B,);
    shifts (B,2) in [0, 2 pad]; flips (B,); ``reflect``: reflect instead of zero padding; scale, bias float32 (C,).
    Returns (B,C,H,W) ``out_dtype``.
    """
    args = (images, idx, delta, delta_rows, shifts, flips, pad, reflect, scale, bias, out_dtype)
    _check(*args)
    return _IMPLS[backend.choose(images)](*args, channels_last)


@augment_op.register_fake
def _(images, idx, delta, delta_rows, shifts, flips, pad, reflect, scale, bias, out_dtype, channels_last):
    return _empty_out(images, idx.shape[0], out_dtype, channels_last)


def augment_batch(images: torch.Tensor, idx: torch.Tensor, delta: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                  crop_pad: int = 4, flip: bool = True, mean=CIFAR10_MEAN, std=CIFAR10_STD, layout: str = "nchw",
                  out_dtype: torch.dtype = torch.float32, generator: torch.Generator | None = None,
                  flips: torch.Tensor | None = None, pad_mode: str = "zero") -> torch.Tensor:
    """A training batch (B, C, H, W) from dataset rows ``idx`` (B,) of ``images`` (N, H, W, C) uint8.

    ``delta`` int8 is per sample (row ``idx[b]``) or, when ``labels`` (N,) is given, per class (row
    ``labels[idx[b]]``). Random crops (padding ``crop_pad``, ``pad_mode`` 'zero' or 'reflect') and horizontal flips
    are drawn from ``generator`` on the images' device, unless ``flips`` (B,) uint8 gives the flips; ``layout`` is
    'nchw' or 'channels_last'.
    """
    if layout not in LAYOUTS:
        raise PstFastError(f"augment_batch: layout={layout!r}: expected one of {', '.join(LAYOUTS)}")
    if pad_mode not in PAD_MODES:
        raise PstFastError(f"augment_batch: pad_mode={pad_mode!r}: expected one of {', '.join(PAD_MODES)}")
    if isinstance(crop_pad, bool) or not isinstance(crop_pad, int) or crop_pad < 0:
        raise PstFastError(f"augment_batch: crop_pad={crop_pad!r}: expected an integer >= 0")
    shifts, drawn = draw_crop_flip(idx.shape[0], crop_pad, flip and flips is None, generator, images.device)
    flips = drawn if flips is None else flips
    scale, bias = normalization(mean, std, images.device)
    delta_rows = None if delta is None else (idx if labels is None else labels[idx])
    return augment_op(images, idx, delta, delta_rows, shifts, flips, crop_pad, pad_mode == "reflect", scale, bias, out_dtype,
                      layout == "channels_last")
