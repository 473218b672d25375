"""The benchmark suite behind ``pst-fast bench``: every script of ``benchmarks/`` (installed as
``pst_fast.benchmarks``) contributes its headline :class:`~pst_fast.benchmark.Entry` through a ``suite(quick, peaks)``
function; the scripts also run alone with their detailed tables.

The machine's peaks (float32 and bfloat16 matmul GFLOP/s, copy GB/s) are measured first; each entry is pst_fast's rate, its
same-run baseline, the ratio (refused when the spreads overlap the difference) and the fraction of the peak.
Scripts whose module sets ``CPU_ONLY = True`` measure on the CPU against the CPU's peaks on every machine.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .benchmark import Entry, Peaks
from .errors import PstFastError
from .io import atomic_write_text

# entry name -> module of benchmarks/ that measures it
SUITE = {
    "augment": "augment",
    "pgd_step": "pgd_step",
    "em_round": "em_generation",
    "train_step_compiled": "train_step",
    "train_step_frozen_prefix": "pst_step",
    "sal_epoch": "sal_epoch",
    "loader": "loader",
}


def run_suite(quick: bool = False, only: list[str] | None = None, device: str = "auto", progress: bool = True) -> tuple[dict, list[Entry]]:
    """Measure the peaks, then every selected benchmark; returns ({device: Peaks}, entries) in suite order."""
    names = only or list(SUITE)
    unknown = [n for n in names if n not in SUITE]
    if unknown:
        raise PstFastError(f"--only {','.join(unknown)}: unknown benchmark; expected some of {', '.join(SUITE)}")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    peaks = {"cpu": Peaks.measure("cpu")}
    if device != "cpu":
        peaks[device] = Peaks.measure(device)
    entries = []
    for name in tqdm(names, desc="bench", unit="benchmark", disable=not progress):
        module = importlib.import_module(f"pst_fast.benchmarks.{SUITE[name]}")
        on = "cpu" if getattr(module, "CPU_ONLY", False) else device
        t0 = time.perf_counter()
        found = [e for e in module.suite(quick, peaks[on]) if e.name == name]
        if not found:
            raise PstFastError(f"benchmarks/{SUITE[name]}.py: suite() returned no entry named {name!r}")
        for e in found:
            e.setup += f"; {on}, {time.perf_counter() - t0:.0f} s"
        entries += found
    return peaks, entries


def markdown(peaks: dict, entries: list[Entry], quick: bool) -> str:
    """The table: pst_fast's figure, the same-run baseline, the ratio and the fraction of the measured peak."""
    head = "; ".join(f"{d}: {p.threads} threads, matmul float32 {p.matmul_gflops:.1f} / bfloat16 {p.bf16_label()}, "
                     f"copy {p.copy_gbs:.1f} GB/s"
                     for d, p in peaks.items())
    lines = [f"pst-fast bench{' --quick' if quick else ''} — peaks measured at the start ({head}). Rates are medians; ± is "
             "(max − min) / median; a ratio is printed only when the spreads are smaller than the difference.", "",
             "| benchmark | pst_fast | baseline (same run) | ratio | of peak | setup |", "|---|---|---|---|---|---|"]
    for e in entries:
        ratio = "n/a (spread > difference)" if e.ratio is None else f"{e.ratio:.2f}×"
        lines.append(f"| {e.name} | {e.value:,.0f} {e.unit} ± {100 * e.spread:.0f}% | {e.baseline:,.0f} ± {100 * e.baseline_spread:.0f}% "
                     f"({e.baseline_name}) | {ratio} | {100 * e.peak_fraction:.1f}% of {e.peak} | {e.setup} |")
    return "\n".join(lines) + "\n"


def write_json(path: str | Path, peaks: dict, entries: list[Entry]) -> Path:
    """A list of entries {name, value, unit, baseline, ratio, peak_fraction, …, peaks}."""
    records = [dataclasses.asdict(e) | {"peaks": {d: dataclasses.asdict(p) for d, p in peaks.items()}} for e in entries]
    return atomic_write_text(Path(path), json.dumps(records, indent=1) + "\n")
