"""Triton kernel of the fused data path; semantics and convention in ``pst_fast.ops.augment``.

Grid (B, cdiv(H*W, BLOCK)): each program computes BLOCK output pixels of one sample for all C channels,
reading the uint8 source (and int8 δ) once and storing float32 / bfloat16 / uint8 through the output's
strides, so NCHW and channels_last outputs share one kernel.
"""
import torch
import triton
import triton.language as tl


@triton.jit
def _augment_kernel(img_ptr, idx_ptr, dlt_ptr, drow_ptr, shift_ptr, flip_ptr, scale_ptr, bias_ptr, out_ptr,
                    H, W, pad, s_ob, s_oc, s_oh, s_ow,
                    C: tl.constexpr, HAS_DELTA: tl.constexpr, REFLECT: tl.constexpr, NORMALIZE: tl.constexpr,
                    BLOCK: tl.constexpr):
    b = tl.program_id(0)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    in_range = offs < H * W
    y = offs // W
    x = offs % W
    dy = tl.load(shift_ptr + 2 * b).to(tl.int32)
    dx = tl.load(shift_ptr + 2 * b + 1).to(tl.int32)
    flip = tl.load(flip_ptr + b) != 0
    sy = y + dy - pad
    sx = tl.where(flip, W - 1 - x, x) + dx - pad
    if REFLECT:  # mirror about the edge pixels (pad < H, W): every pixel reads the image
        sy = tl.where(sy < 0, -sy, tl.where(sy >= H, 2 * (H - 1) - sy, sy))
        sx = tl.where(sx < 0, -sx, tl.where(sx >= W, 2 * (W - 1) - sx, sx))
    inside = in_range & (sy >= 0) & (sy < H) & (sx >= 0) & (sx < W)
    pix = (sy * W + sx) * C  # offset within one image; only dereferenced where inside
    plane = H * W * C
    src = img_ptr + tl.load(idx_ptr + b) * plane + pix
    if HAS_DELTA:
        dsrc = dlt_ptr + tl.load(drow_ptr + b) * plane + pix
    dst = out_ptr + b.to(tl.int64) * s_ob + y * s_oh + x * s_ow
    for c in tl.static_range(C):
        v = tl.load(src + c, mask=inside, other=0).to(tl.int32)
        if HAS_DELTA:
            v = tl.minimum(tl.maximum(v + tl.load(dsrc + c, mask=inside, other=0).to(tl.int32), 0), 255)
        if NORMALIZE:
            o = v.to(tl.float32) * tl.load(scale_ptr + c) + tl.load(bias_ptr + c)
            tl.store(dst + c * s_oc, o.to(out_ptr.dtype.element_ty), mask=in_range)
        else:
            tl.store(dst + c * s_oc, v.to(tl.uint8), mask=in_range)


def augment_triton(images, idx, delta, delta_rows, shifts, flips, pad, reflect, scale, bias, out, block: int = 256):
    """Fill ``out`` (B, C, H, W) float32/bfloat16/uint8, any strides, from ``images`` (N, H, W, C) uint8.

    Arguments as ``pst_fast.ops.augment.augment_reference`` (already validated); ``delta=None`` compiles
    the kernel without the δ loads.
    """
    B, C, H, W = out.shape
    has_delta = delta is not None
    grid = (B, triton.cdiv(H * W, block))
    _augment_kernel[grid](
        images, idx.contiguous(), delta if has_delta else images, delta_rows.contiguous() if has_delta else idx,
        shifts.contiguous(), flips.to(torch.uint8).contiguous(), scale, bias, out,
        H, W, pad, *out.stride(),
        C=C, HAS_DELTA=has_delta, REFLECT=bool(reflect), NORMALIZE=out.dtype != torch.uint8, BLOCK=block,
    )
