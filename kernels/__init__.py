"""Triton kernels of pst_fast, imported as ``pst_fast.kernels`` (installed there by setup.py; from a checkout via
``pst_fast.checkout``).

Each module holds ``@triton.jit`` kernels and a launcher; they are imported only when a Triton path is
taken (CUDA tensors, or ``TRITON_INTERPRET=1`` with ``PST_FAST_BACKEND=triton``). No autotuning runs at import.
"""
