"""SAL's fused bookkeeping ops (torch reference, C++ CPU path, Triton GPU path), as torch.library custom ops.

``sal_project_(w, w0, radius) -> ratio``: ``w``, ``w0`` float32 (V, n), one row per weight variant. For
each row, r = ‖w − w0‖_F / ‖w0‖_F; if r > radius the displacement is rescaled onto the sphere:
w ← w0 + (w − w0)·radius/r (in place). Returns r before projection, (V,) float32.

``sal_sharpness(l0, loss_max, loss_min) -> (V,)``: ``loss_max``/``loss_min`` (R, V) are the eval losses of
the ascending/descending copies after each of R rounds, ``l0`` (V,) the reference loss:
S_max = max(l0, max_k loss_max) − l0, S_min = l0 − min(l0, min_k loss_min), SAL = max(S_max, S_min).

The C++ path sums the norms in float64, Triton in float32: both agree with the reference to 1e-6.
"""
from __future__ import annotations

import torch

from .. import backend
from ..errors import PstFastError


def sal_project_reference(w: torch.Tensor, w0: torch.Tensor, radius: float) -> torch.Tensor:
    """Plain-torch reference of ``sal_project_``: updates ``w`` in place, returns the ratios."""
    d = w - w0
    r = (d.double().norm(dim=1) / w0.double().norm(dim=1)).float()
    over = r > radius
    w.copy_(torch.where(over[:, None], w0 + d * (radius / r)[:, None], w))
    return r


def sal_sharpness_reference(l0: torch.Tensor, loss_max: torch.Tensor, loss_min: torch.Tensor) -> torch.Tensor:
    hi = torch.maximum(l0, loss_max.max(0).values)
    lo = torch.minimum(l0, loss_min.min(0).values)
    return torch.maximum(hi - l0, l0 - lo)


def _check_rows(name: str, *ts: torch.Tensor) -> None:
    for t in ts:
        if t.dtype != torch.float32 or t.device != ts[0].device:
            raise PstFastError(f"{name}: expected float32 tensors on one device, got {t.dtype} on {t.device}")
    if len({t.shape for t in ts[-2:]}) != 1 or ts[-1].dim() != 2:
        raise PstFastError(f"{name}: expected two (rows, n) tensors of one shape, got {[tuple(t.shape) for t in ts]}")


@torch.library.custom_op("pst_fast::sal_project_", mutates_args=("w",))
def sal_project_(w: torch.Tensor, w0: torch.Tensor, radius: float) -> torch.Tensor:
    """Project each row of ``w`` onto the radius·‖w0‖ sphere around ``w0`` when outside it; returns the ratios."""
    _check_rows("sal_project_", w, w0)
    if not radius > 0:
        raise PstFastError(f"sal_project_: radius={radius}: expected > 0")
    path = backend.choose(w)
    if path == "reference" or not w.is_contiguous():
        return sal_project_reference(w, w0, radius)
    w0 = w0.contiguous()
    ratio = torch.empty(w.shape[0], device=w.device, dtype=torch.float32)
    if path == "cpu":
        backend.native().sal_project(w.data_ptr(), w0.data_ptr(), ratio.data_ptr(), w.shape[0], w.shape[1], radius)
    else:
        from ..kernels.sal import project_triton

        project_triton(w, w0, ratio, radius)
    return ratio


@sal_project_.register_fake
def _(w, w0, radius):
    return w.new_empty(w.shape[0])


@torch.library.custom_op("pst_fast::sal_sharpness", mutates_args=())
def sal_sharpness(l0: torch.Tensor, loss_max: torch.Tensor, loss_min: torch.Tensor) -> torch.Tensor:
    """Per-variant sharpness max(S_max, S_min) (V,) from the (R, V) round losses; math in the module docstring."""
    _check_rows("sal_sharpness", l0, loss_max, loss_min)
    if l0.shape != loss_max.shape[1:]:
        raise PstFastError(f"sal_sharpness: l0 {tuple(l0.shape)} does not match the losses' (R, V) = {tuple(loss_max.shape)}")
    path = backend.choose(l0)
    if path == "reference":
        return sal_sharpness_reference(l0, loss_max, loss_min)
    l0, loss_max, loss_min = l0.contiguous(), loss_max.contiguous(), loss_min.contiguous()
    out = torch.empty_like(l0)
    if path == "cpu":
        backend.native().sal_sharpness(l0.data_ptr(), loss_max.data_ptr(), loss_min.data_ptr(), out.data_ptr(), *loss_max.shape)
    else:
        from ..kernels.sal import sharpness_triton

        sharpness_triton(l0, loss_max, loss_min, out)
    return out


@sal_sharpness.register_fake
def _(l0, loss_max, loss_min):
    return torch.empty_like(l0)
