"""Triton kernels of SAL's bookkeeping; the math is ``pst_fast.ops.sal`` (its torch reference).

project: one program per weight row sweeps its n elements twice (the two squared norms; then the rescale).
sharpness: one program per block of variants walks the R rounds.
"""
import torch
import triton
import triton.language as tl


@triton.jit
def _project_kernel(w_ptr, w0_ptr, ratio_ptr, n, radius, BLOCK: tl.constexpr):
    v = tl.program_id(0)
    base = v.to(tl.int64) * n
    dd = tl.zeros([BLOCK], dtype=tl.float32)
    bb = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, n, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        m = offs < n
        w = tl.load(w_ptr + base + offs, mask=m, other=0.0)
        w0 = tl.load(w0_ptr + base + offs, mask=m, other=0.0)
        dd += (w - w0) * (w - w0)
        bb += w0 * w0
    r = tl.sqrt(tl.sum(dd, 0)) / tl.sqrt(tl.sum(bb, 0))
    tl.store(ratio_ptr + v, r)
    if r > radius:
        scale = radius / r
        for start in range(0, n, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            m = offs < n
            w = tl.load(w_ptr + base + offs, mask=m, other=0.0)
            w0 = tl.load(w0_ptr + base + offs, mask=m, other=0.0)
            tl.store(w_ptr + base + offs, w0 + (w - w0) * scale, mask=m)


@triton.jit
def _sharpness_kernel(l0_ptr, max_ptr, min_ptr, out_ptr, R, V, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < V
    l0 = tl.load(l0_ptr + offs, mask=m, other=0.0)
    hi = l0
    lo = l0
    for k in range(0, R):
        hi = tl.maximum(hi, tl.load(max_ptr + k * V + offs, mask=m, other=0.0))
        lo = tl.minimum(lo, tl.load(min_ptr + k * V + offs, mask=m, other=0.0))
    tl.store(out_ptr + offs, tl.maximum(hi - l0, l0 - lo), mask=m)


def project_triton(w: torch.Tensor, w0: torch.Tensor, ratio: torch.Tensor, radius: float) -> None:
    """In place on dense float32 (V, n) rows ``w``; ``ratio`` (V,) receives ‖w − w0‖ / ‖w0‖."""
    V, n = w.shape
    _project_kernel[(V,)](w, w0, ratio, n, radius, BLOCK=1024)


def sharpness_triton(l0: torch.Tensor, loss_max: torch.Tensor, loss_min: torch.Tensor, out: torch.Tensor) -> None:
    R, V = loss_max.shape
    _sharpness_kernel[(triton.cdiv(V, 256),)](l0, loss_max, loss_min, out, R, V, BLOCK=256)
