"""PGD inner update: time per call of pgd_step (reference, C++, C++ in place, Triton on CUDA) against the
eager-PyTorch lines typical unlearnable-examples code runs, all in the same run, for L∞ and L2, plus the
achieved bandwidth (x, δ, grad read + δ written) as a fraction of a large copy's.

Usage: python benchmarks/pgd_step.py [--quick]
"""
import argparse

import torch

from pst_fast import backend
from pst_fast.benchmark import Entry, Peaks, copy_bandwidth_gbs, entry, measure, ratio_text
from pst_fast.ops.pgd import pgd_step, pgd_step_, pgd_step_reference

EPS = {"linf": 8 / 255, "l2": 0.5}
ALPHA = {"linf": 0.8 / 255, "l2": 0.1}


def eager_linf(x, delta, grad, alpha, eps):
    """The baseline as written in typical UE / PGD code."""
    delta = delta + alpha * grad.sign()
    delta = torch.clamp(delta, -eps, eps)
    return torch.clamp(x + delta, 0, 1) - x


def eager_l2(x, delta, grad, alpha, eps):
    """The usual L2 PGD step: normalize the gradient per sample, step, renormalize onto the ball, clamp."""
    B = x.shape[0]
    g_norm = grad.view(B, -1).norm(p=2, dim=1).view(B, 1, 1, 1)
    delta = delta + alpha * grad / (g_norm + 1e-10)
    d_norm = delta.view(B, -1).norm(p=2, dim=1).view(B, 1, 1, 1)
    delta = delta * torch.clamp(eps / (d_norm + 1e-10), max=1.0)
    return torch.clamp(x + delta, 0, 1) - x


def inputs(B, norm, device):
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(B, 3, 32, 32, generator=g, device=device)
    delta = (torch.rand(B, 3, 32, 32, generator=g, device=device) * 2 - 1) * (EPS[norm] if norm == "linf" else 0.01)
    return x, torch.clamp(x + delta, 0, 1) - x, torch.randn(B, 3, 32, 32, generator=g, device=device)


def row(name, t, base, nbytes, bw):
    gbs = nbytes / t.median / 1e9
    ratio = "1.00x" if t is base else ratio_text(t, base)
    print(f"{name:<26} {1e3 * t.median:9.3f} ± {1e3 * t.spread:7.3f} {gbs:7.2f} {100 * gbs / bw:8.1f}%  {ratio}")


def bench(B, norm, bw, repeat, min_seconds):
    x, delta, grad = inputs(B, norm, "cpu")
    eps, alpha = EPS[norm], ALPHA[norm]
    nbytes = 4 * x.numel() * 4  # read x, δ, grad; write δ (float32)
    eager = eager_linf if norm == "linf" else eager_l2
    t = lambda fn: measure(fn, repeat=repeat, warmup=2, min_seconds=min_seconds)  # noqa: E731
    print(f"\n{norm}, B={B} x 3x32x32 ({nbytes / 2**20:.0f} MiB moved per call)")
    print(f"{'path':<26} {'ms/call':>9}   {'spread':>7} {'GB/s':>7} {'of copy':>9}  vs eager")
    base = t(lambda: eager(x, delta, grad, alpha, eps))
    row("eager torch (baseline)", base, base, nbytes, bw)
    row("pgd_step_reference", t(lambda: pgd_step_reference(x, delta, grad, alpha, eps, norm)), base, nbytes, bw)
    path = backend.choose(x)  # 'cpu' (the C++ extension) unless PST_FAST_BACKEND says otherwise
    row(f"pgd_step [{path}]", t(lambda: pgd_step(x, delta, grad, alpha, eps, norm)), base, nbytes, bw)
    d = delta.clone()
    row(f"pgd_step_ [{path}] in place", t(lambda: pgd_step_(d, x, grad, alpha, eps, norm)), base, nbytes, bw)


def bench_cuda(B, norm, repeat):
    """Triton on a real GPU, against the same eager lines on the GPU (only runs when CUDA is present)."""
    x, delta, grad = inputs(B, norm, "cuda")
    eps, alpha = EPS[norm], ALPHA[norm]
    eager = eager_linf if norm == "linf" else eager_l2
    t = lambda fn: measure(fn, repeat=repeat, warmup=3, device="cuda", min_seconds=0.05)  # noqa: E731
    base = t(lambda: eager(x, delta, grad, alpha, eps))
    fast = t(lambda: pgd_step_(delta, x, grad, alpha, eps, norm))
    print(f"CUDA {norm} B={B}: eager {1e3 * base.median:.3f} ms, triton in place {1e3 * fast.median:.3f} ms, {ratio_text(fast, base)}")


def suite(quick: bool, peaks: Peaks) -> list[Entry]:
    """``pgd_step``: the in-place fused L∞ update on its dispatch path against the eager lines, B = 10,000 CIFAR images;
    bytes moved (x, δ, grad read, δ written) against the copy peak."""
    B, repeat, secs = 10000, (3 if quick else 7), (0.1 if quick else 0.3)
    x, delta, grad = inputs(B, "linf", peaks.device)
    eps, alpha = EPS["linf"], ALPHA["linf"]
    base = measure(lambda: eager_linf(x, delta, grad, alpha, eps), repeat=repeat, warmup=2, device=peaks.device, min_seconds=secs)
    d = delta.clone()
    fast = measure(lambda: pgd_step_(d, x, grad, alpha, eps, "linf"), repeat=repeat, warmup=2, device=peaks.device, min_seconds=secs)
    return [entry("pgd_step", "images/s", B, fast, base, "eager sign/add/clamp/clamp", peaks, "copy", 16 * x.numel(),
                  f"L∞, B={B} x 3x32x32 float32, in place, {backend.choose(x)} path")]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    a = p.parse_args()
    repeat, min_seconds = (3, 0.05) if a.quick else (7, 0.2)
    bw = copy_bandwidth_gbs("cpu")
    print(f"CPU, {torch.get_num_threads()} threads, copy bandwidth {bw:.1f} GB/s (measured on 256 MiB); times are median ± (max - min)")
    print("B=512 inputs (18 MiB) may stay in the last-level cache, so their bandwidth can exceed the copy's")
    for norm in ("linf", "l2"):
        for B in (512, 10000):
            bench(B, norm, bw, repeat, min_seconds)
    print()
    if torch.cuda.is_available():
        for norm in ("linf", "l2"):
            for B in (512, 10000):
                bench_cuda(B, norm, repeat)
    else:
        print("triton: not measured (no CUDA device; the kernels are tested under TRITON_INTERPRET=1)")


if __name__ == "__main__":
    main()
