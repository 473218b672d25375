"""Timing primitives shared by every benchmark: repeated measurement, the machine's measured peaks, and the
:class:`Entry` each benchmark's ``suite()`` returns to ``pst-fast bench``.

Speed is always reported against a baseline measured in the same run, and as a fraction of the
machine's matmul peak (GFLOP/s of a large fp32 matmul) or copy bandwidth, measured at the start.
On CUDA, samples are timed with CUDA events.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from .device import native_cpu_bf16


@dataclass
class Timing:
    """Seconds per call: median and spread (max - min) over ``repeat`` measured calls."""

    median: float
    spread: float
    samples: list

    def rate(self, work: float) -> float:
        """``work`` units per call -> units per second at the median."""
        return work / self.median


def sync(device: torch.device | str | None = None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def measure(fn: Callable[[], object], repeat: int = 5, warmup: int = 2, device=None, min_seconds: float = 0.0) -> Timing:
    """Time ``fn`` (after ``warmup`` calls) ``repeat`` times; each sample loops until ``min_seconds`` elapse."""
    for _ in range(warmup):
        fn()
    sync(device)
    samples = [_sample(fn, device, min_seconds) for _ in range(repeat)]
    return Timing(statistics.median(samples), max(samples) - min(samples), samples)


def _sample(fn: Callable[[], object], device, min_seconds: float) -> float:
    """Seconds per call of ``fn``, looping until ``min_seconds`` have elapsed (at least one call); on CUDA the
    device time between two events around the calls."""
    cuda = device is not None and torch.device(device).type == "cuda"
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        sync(device)
        dt = time.perf_counter() - t0
        if dt >= min_seconds:
            break
    if cuda:
        end.record()
        end.synchronize()
        dt = start.elapsed_time(end) / 1e3
    return dt / n


def measure_interleaved(fns: list[Callable[[], object]], repeat: int = 5, warmup: int = 2, device=None,
                        min_seconds: float = 0.0) -> list[Timing]:
    """Like :func:`measure` for several functions, taking their samples in turns (A B A B ...), so that load
    from other processes hits every candidate alike; one Timing per function."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    sync(device)
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, out in zip(fns, samples):
            out.append(_sample(fn, device, min_seconds))
    return [Timing(statistics.median(s), max(s) - min(s), s) for s in samples]


def ratio(fast: Timing, base: Timing) -> float | None:
    """base / fast (the speed-up), or None when the spreads overlap the difference (too noisy to tell)."""
    if abs(base.median - fast.median) <= max(fast.spread, base.spread):
        return None
    return base.median / fast.median


def ratio_text(fast: Timing, base: Timing) -> str:
    """'12.3x', or a refusal when the spreads overlap the difference (the machine was too noisy to tell)."""
    r = ratio(fast, base)
    return "n/a (spread > difference)" if r is None else f"{r:.2f}x"


def matmul_peak_gflops(device="cpu", n: int = 1024, dtype=torch.float32) -> float:
    """Measured GFLOP/s of an n x n x n matmul (2 n^3 FLOPs) on ``device``: the machine's practical peak."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    t = measure(lambda: torch.mm(a, b), repeat=5, warmup=2, device=device, min_seconds=0.2)
    return 2 * n**3 / t.median / 1e9


def copy_bandwidth_gbs(device="cpu", mib: int = 256) -> float:
    """Measured GB/s (bytes read + written) of a large tensor copy on ``device``."""
    src = torch.empty(mib << 20, dtype=torch.uint8, device=device).random_(0, 255)
    dst = torch.empty_like(src)
    t = measure(lambda: dst.copy_(src), repeat=5, warmup=1, device=device, min_seconds=0.2)
    return 2 * src.numel() / t.median / 1e9


@dataclass
class Peaks:
    """The machine's practical peaks, measured at the start of a run."""

    device: str
    threads: int
    matmul_gflops: float       # float32 n x n x n matmul
    copy_gbs: float            # bytes read + written by a large copy, per second / 1e9
    matmul_bf16_gflops: float = 0.0  # bfloat16 n x n x n matmul (the peak of bf16-autocast paths)
    bf16_emulated: bool = False      # a CPU without AVX512-BF16 or AMX: the bf16 "peak" is software emulation

    @classmethod
    def measure(cls, device="cpu") -> "Peaks":
        """The peaks of ``device``; on CUDA from 8192³ products (1024³ leaves a GPU mostly idle between launches)."""
        cpu = torch.device(device).type == "cpu"
        n = 1024 if cpu else 8192
        return cls(str(device), torch.get_num_threads(), matmul_peak_gflops(device, n), copy_bandwidth_gbs(device),
                   matmul_peak_gflops(device, n, dtype=torch.bfloat16), cpu and not native_cpu_bf16())

    def bf16_label(self) -> str:
        """The bf16 peak as printed, marked when the CPU emulates bf16."""
        return f"{self.matmul_bf16_gflops:.1f} GFLOP/s" + (" (emulated: no AVX512-BF16 or AMX)" if self.bf16_emulated else "")

    def fraction(self, kind: str, per_second: float) -> float:
        """``per_second`` FLOP/s ('matmul', 'matmul-bf16') or bytes/s ('copy') as a fraction of the measured peak."""
        peak = {"matmul": self.matmul_gflops, "matmul-bf16": self.matmul_bf16_gflops, "copy": self.copy_gbs}[kind]
        return per_second / 1e9 / peak


@dataclass
class Entry:
    """One line of ``pst-fast bench``: pst_fast's rate against a same-run baseline, and against the machine's peak."""

    name: str
    value: float               # pst_fast's rate (``unit``) at the median sample
    unit: str
    baseline: float            # the baseline's rate, same unit, same run
    baseline_name: str
    ratio: float | None        # value / baseline; None when the spreads overlap the difference
    peak_fraction: float       # achieved FLOP/s or bytes/s of pst_fast's path as a fraction of ``peak``
    peak: str                  # 'matmul' or 'copy'
    spread: float              # (max - min) / median of pst_fast's samples
    baseline_spread: float
    setup: str = ""            # what was measured (shapes, model, backend)


def entry(name: str, unit: str, per_call: float, fast: Timing, base: Timing, baseline_name: str, peaks: Peaks, peak: str,
          peak_work: float, setup: str = "") -> Entry:
    """An :class:`Entry` from two timings: ``per_call`` units (images, …) and ``peak_work`` FLOPs or bytes per call of
    pst_fast's path."""
    return Entry(name, fast.rate(per_call), unit, base.rate(per_call), baseline_name, ratio(fast, base),
                 peaks.fraction(peak, peak_work / fast.median), peak, fast.spread / fast.median, base.spread / base.median, setup)
