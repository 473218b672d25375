"""Where a computation runs: the device named by ``--device`` and whether bf16 autocast is on (``--amp``)."""
from __future__ import annotations

import contextlib

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


def amp_enabled(amp: str, device) -> bool:
    """``--amp`` on, off or auto (on for CUDA only) -> whether bf16 autocast runs on ``device``."""
    return amp == "on" or (amp == "auto" and torch.device(device).type == "cuda")


def autocast(device: torch.device, amp: str):
    """The bf16 autocast context of ``--amp`` on ``device`` (a null context when it is off)."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp_enabled(amp, device) else contextlib.nullcontext()
