"""Where a computation runs: the device named by ``--device`` and whether bf16 autocast is on (``--amp``)."""
from __future__ import annotations

import contextlib
import functools
import sys

import torch

from .errors import PstFastError


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (cuda when available) -> a usable device; one-line error otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise PstFastError(f"--device {name!r}: expected cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PstFastError(f"--device {name}: CUDA is not available on this machine")
    return dev


def native_cpu_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX), as oneDNN sees it; True when torch cannot tell."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return True


@functools.cache
def _warn_emulated_bf16() -> None:
    print("pst-fast: warning: --amp on: this CPU has no native bf16 (no AVX512-BF16 or AMX), so bf16 autocast is emulated "
          "and runs ~10x slower than float32 (docs/benchmarks.md); use --amp off", file=sys.stderr)


def amp_enabled(amp: str, device) -> bool:
    """``--amp`` on, off or auto (on for CUDA only) -> whether bf16 autocast runs on ``device``.

    Warns once per process (stderr) when bf16 runs on a CPU that emulates it."""
    kind = torch.device(device).type
    on = amp == "on" or (amp == "auto" and kind == "cuda")
    if on and kind == "cpu" and not native_cpu_bf16():
        _warn_emulated_bf16()
    return on


def autocast(device: torch.device, amp: str):
    """The bf16 autocast context of ``--amp`` on ``device`` (a null context when it is off)."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp_enabled(amp, device) else contextlib.nullcontext()
