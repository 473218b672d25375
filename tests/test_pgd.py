"""pgd_step: C++ and Triton paths against the torch reference on random and boundary cases; invariants."""
import os
import textwrap

import pytest
import torch
from conftest import run_in_triton_interpreter

from pst_fast.errors import PstFastError
from pst_fast.ops.pgd import pgd_step, pgd_step_, pgd_step_reference


def make(shape, eps, norm, lo=0.0, hi=1.0, seed=0):
    """(x, delta, grad) with the boundary cases planted: pixels at lo and hi, δ on the ε-ball (L∞: entries at ±ε;
    L2: sample 1 with ‖δ‖ = ε) with the gradient pushing outward, zero-gradient entries, sample 0 with no gradient."""
    g = torch.Generator().manual_seed(seed)
    x = lo + (hi - lo) * torch.rand(shape, generator=g)
    delta = (torch.rand(shape, generator=g) * 2 - 1) * eps
    grad = torch.randn(shape, generator=g)
    flat_x, flat_d, flat_g = x.view(shape[0], -1), delta.view(shape[0], -1), grad.view(shape[0], -1)
    flat_x[:, :2] = torch.tensor([lo, hi])[: flat_x.shape[1]]
    if norm == "linf":
        flat_d[:, 2:6] = torch.tensor([eps, -eps, eps, -eps])[: max(0, flat_d.shape[1] - 2)]
        flat_g[:, 2:6] = torch.tensor([1.0, -1.0, 0.0, -2.0])[: max(0, flat_g.shape[1] - 2)]
    elif shape[0] > 1:
        flat_g[1] = flat_d[1]
        flat_d[1] *= eps / flat_d[1].norm()
    flat_g[:, 6:9] = 0.0
    if shape[0] > 2:
        flat_g[0] = 0.0
    delta = torch.clamp(x + delta, lo, hi) - x                       # a feasible δ, as a PGD loop keeps it
    return x, delta, grad


def random_case(seed):
    """A random shape, layout, norm, ε, step (up to 3ε, so x+δ often leaves the box), direction, box and mask."""
    g = torch.Generator().manual_seed(seed)
    r = lambda n: int(torch.randint(1, n + 1, (1,), generator=g))  # noqa: E731
    u = lambda: float(torch.rand(1, generator=g))  # noqa: E731
    shape = (r(9), r(3), r(12), r(12)) if r(4) > 1 else (r(6), r(40))
    channels_last = len(shape) == 4 and r(2) == 1
    norm = ("linf", "l2")[seed % 2]
    eps = 0.5 * u() + 1e-3 if norm == "linf" else 3 * u() + 1e-2
    lo, hi = ((0.0, 1.0), (-1.0, 1.0), (-0.25, 2.5))[r(3) - 1]
    active = torch.rand(shape[0], generator=g) > 0.3 if r(2) == 1 else None
    return shape, channels_last, norm, eps, 3 * eps * u(), (1, -1)[r(2) - 1], lo, hi, active


def assert_matches(out, ref, norm):
    if norm == "linf":
        assert torch.equal(out.view(torch.int32), ref.view(torch.int32)), "L∞ must match the reference bit for bit"
    else:
        torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)


def assert_invariants(x, delta, out, eps, norm, lo, hi, active):
    """x+δ' in the box; δ' in the ball up to the rounding of (x + d) - x, at most one ulp of max(|lo|, |hi|)."""
    assert (x + out).min() >= lo and (x + out).max() <= hi
    moved = torch.ones(x.shape[0], dtype=torch.bool) if active is None else active
    ulp = torch.finfo(torch.float32).eps * max(abs(lo), abs(hi))
    if norm == "linf":
        assert (out[moved].abs() <= eps + ulp).all()
    else:
        assert (out[moved].flatten(1).norm(dim=1) <= eps * (1 + 1e-6) + ulp * out[0].numel() ** 0.5).all()
    assert torch.equal(out[~moved], delta[~moved])


@pytest.mark.parametrize("seed", range(48))
def test_cpu_matches_reference_random(seed, monkeypatch):
    monkeypatch.setenv("PST_FAST_BACKEND", "cpu")
    shape, cl, norm, eps, step, direction, lo, hi, active = random_case(seed)
    x, delta, grad = make(shape, eps, norm, lo, hi, seed)
    if cl:
        x, delta, grad = (t.contiguous(memory_format=torch.channels_last) for t in (x, delta, grad))
    ref = pgd_step_reference(x, delta, grad, step, eps, norm, direction, lo, hi, active)
    out = pgd_step(x, delta, grad, step, eps, norm, direction, lo, hi, active)
    assert_matches(out, ref, norm)
    assert out.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
    assert_invariants(x, delta, out, eps, norm, lo, hi, active)
    inplace = delta.clone()
    pgd_step_(inplace, x, grad, step, eps, norm, direction, lo, hi, active)
    assert torch.equal(inplace, out)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_cpu_layouts_views_and_bf16_grad(norm, monkeypatch):
    monkeypatch.setenv("PST_FAST_BACKEND", "cpu")
    eps, step = (8 / 255, 2 / 255) if norm == "linf" else (0.5, 0.2)
    x, delta, grad = make((6, 3, 9, 7), eps, norm)
    ref = pgd_step_reference(x, delta, grad, step, eps, norm)
    cl = lambda t: t.contiguous(memory_format=torch.channels_last)  # noqa: E731
    assert_matches(pgd_step(cl(x), delta, cl(grad), step, eps, norm), ref, norm)        # mixed layouts
    assert_matches(pgd_step(x, cl(delta), grad, step, eps, norm), ref, norm)
    big = torch.zeros(12, 3, 9, 7)
    big[::2] = delta
    view = big[::2]                                                                      # non-dense δ, updated in place
    pgd_step_(view, x, grad, step, eps, norm)
    assert_matches(big[::2].contiguous(), ref, norm) and torch.equal(big[1::2], torch.zeros(6, 3, 9, 7))
    gb = grad.bfloat16()
    assert_matches(pgd_step(x, delta, gb, step, eps, norm), pgd_step_reference(x, delta, gb, step, eps, norm), norm)


def test_boundary_semantics():
    """Dyadic values, so every result is exact: box edges, δ on the ball pushed outward, zero gradients, mask."""
    x = torch.tensor([[0.0, 1.0, 0.5, 0.5, 0.5, 0.75]]).repeat(2, 1)
    delta = torch.tensor([[0.0, 0.0, 0.25, -0.25, 0.0, 0.25]]).repeat(2, 1)
    grad = torch.tensor([[-1.0, 1.0, 1.0, -3.0, 0.0, 1.0], [0.0] * 6])
    up = pgd_step(x, delta, grad, 0.125, 0.25, "linf", 1)
    assert torch.equal(up, delta)                                     # box and ball stop every move; no gradient, no move
    down = pgd_step(x, delta, grad, 0.125, 0.25, "linf", -1)
    assert torch.equal(down[0], torch.tensor([0.125, -0.125, 0.125, -0.125, 0.0, 0.125]))
    assert torch.equal(pgd_step(x, delta, torch.zeros_like(grad), 0.5, 1.0, "l2"), delta)   # zero gradient: zero L2 step
    on_ball = torch.full((2, 4), 0.25)                                # ‖δ_b‖ = 0.5 = ε, gradient along δ: projected back
    l2 = pgd_step(torch.full((2, 4), 0.5), on_ball, on_ball, 0.125, 0.5, "l2")
    torch.testing.assert_close(l2, on_ball, atol=1e-7, rtol=0)
    out = pgd_step(x, delta, grad, 0.125, 0.25, "linf", -1, active=torch.tensor([False, True]))
    assert torch.equal(out, delta)


@pytest.mark.parametrize(
    "kw, match",
    [(dict(eps=0.0), "eps=0.0"), (dict(eps=1.5), "eps=1.5"), (dict(eps=-1.0, norm="l2"), "eps=-1.0"),
     (dict(norm="l1"), "norm='l1'"), (dict(direction=2), "direction=2"), (dict(step_size=-0.1), "step_size=-0.1"),
     (dict(lo=1.0, hi=0.0), "lo=1.0"), (dict(active=torch.ones(3, dtype=torch.bool)), "active must be bool"),
     (dict(active=torch.ones(2)), "active must be bool")],
)
def test_bad_arguments(kw, match):
    x, delta, grad = make((2, 3, 4, 4), 0.03, "linf")
    with pytest.raises(PstFastError, match=match):
        pgd_step(x, delta, grad, **(dict(step_size=0.01, eps=0.03) | kw))


def test_bad_tensors():
    x, delta, grad = make((2, 3, 4, 4), 0.03, "linf")
    for args, match in [((x, delta[:1], grad), "share one"), ((x[0], delta[0], grad[0].flatten()), "share one"),
                        ((x.double(), delta, grad), "float32"), ((x, delta, grad.int()), "float32"),
                        ((x, delta.half(), grad), "float32")]:
        with pytest.raises(PstFastError, match=match):
            pgd_step(*args, 0.01, 0.03)
    with pytest.raises(PstFastError, match="eps=2.0"):
        pgd_step_(delta, x, grad, 0.01, 2.0)


def under_torch_compile(norm, device="cpu", backend="inductor"):
    """Both custom ops trace with fullgraph=True on ``device`` and give eager's results (two in-place steps, then one
    functional); scripts/device_check.py runs it on CUDA."""
    x, delta, grad = (t.to(device) for t in make((4, 3, 8, 8), 0.5, norm))

    def attack(x, d, g):
        for _ in range(2):
            pgd_step_(d, x, g, 0.1, 0.5, norm, -1)
        return pgd_step(x, d, g, 0.1, 0.5, norm, -1) * 1.0

    eager = attack(x, delta.clone(), grad)
    assert_matches(torch.compile(attack, fullgraph=True, backend=backend)(x, delta.clone(), grad).cpu(), eager.cpu(), norm)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_under_torch_compile(norm):
    under_torch_compile(norm)


def triton_matches_reference(device, seeds):
    """The Triton kernels on ``device`` (CPU tensors under TRITON_INTERPRET=1, or CUDA) against the torch reference on the
    CPU for the random cases ``seeds``, functional and in place (bf16 gradient); every call must launch a kernel."""
    import pst_fast.kernels.pgd as K

    calls = []
    launch = K.pgd_triton
    K.pgd_triton = lambda *a, **k: (calls.append(1), launch(*a, **k))[1]
    try:
        for seed in seeds:
            shape, cl, norm, eps, step, direction, lo, hi, active = random_case(seed)
            x, d, g = make(shape, eps, norm, lo, hi, seed)
            if cl:
                x, d, g = (t.contiguous(memory_format=torch.channels_last) for t in (x, d, g))
            on = lambda t: None if t is None else t.to(device)  # noqa: E731  (.to keeps the memory format)
            ref = pgd_step_reference(x, d, g, step, eps, norm, direction, lo, hi, active)
            out = pgd_step(on(x), on(d), on(g), step, eps, norm, direction, lo, hi, on(active)).cpu()
            assert_matches(out, ref, norm)
            assert_invariants(x, d, out, eps, norm, lo, hi, active)
            ref = pgd_step_reference(x, d, g.bfloat16(), step, eps, norm, direction, lo, hi, active)
            dd = on(d)
            pgd_step_(dd, on(x), on(g).bfloat16(), step, eps, norm, direction, lo, hi, on(active))   # in place, bf16 grad
            assert_matches(dd.cpu(), ref, norm)
    finally:
        K.pgd_triton = launch
    assert len(calls) == 2 * len(seeds), len(calls)


TRITON_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_pgd import triton_matches_reference
    triton_matches_reference("cpu", range(12))
    print("TRITON_OK")
    """
)


def test_triton_matches_reference_in_interpreter():
    run_in_triton_interpreter(TRITON_SCRIPT, os.path.dirname(os.path.abspath(__file__)))
