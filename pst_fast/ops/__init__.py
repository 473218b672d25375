"""Fused ops, each with a torch reference, a C++ CPU path and a Triton GPU path, registered as torch.library custom ops.

Which path runs: :func:`pst_fast.backend.choose` on the op's main tensor (Triton on CUDA, the ``pst_fast._C``
extension on CPU, else the reference; ``PST_FAST_BACKEND`` forces one). Each op's pieces, by path from the checkout
root (``kernels/`` and ``benchmarks/`` are ``pst_fast.kernels`` / ``pst_fast.benchmarks``):

=========  ================================  =================================  ====================================
piece      augment_batch (augment_op)        pgd_step, pgd_step_                sal_project_, sal_sharpness
=========  ================================  =================================  ====================================
reference  pst_fast/ops/augment.py           pst_fast/ops/pgd.py                pst_fast/ops/sal.py
           augment_reference                 pgd_step_reference                 sal_project_reference,
                                                                                sal_sharpness_reference
C++ (CPU)  csrc/augment.cpp: augment         csrc/pgd.cpp: pgd_step             csrc/sal.cpp: sal_project,
                                                                                sal_sharpness
Triton     kernels/augment.py:               kernels/pgd.py: pgd_triton         kernels/sal.py: project_triton,
           augment_triton                    (_linf_kernel, _l2_kernel)         sharpness_triton
dispatch   augment_op: _IMPLS[choose]        _run (both ops)                    in each op
tests      tests/test_augment.py             tests/test_pgd.py                  tests/test_sal.py
benchmark  benchmarks/augment.py             benchmarks/pgd_step.py             benchmarks/sal_epoch.py (the SAL
                                                                                epoch that calls them)
=========  ================================  =================================  ====================================

The C++ functions are bound in csrc/module.cpp. The tests hold each fast path to the reference, the Triton kernels
under ``TRITON_INTERPRET=1``; on a GPU, scripts/device_check.py reruns those tests' Triton checks on CUDA.
"""
from .augment import augment_batch, augment_op, augment_reference
from .pgd import pgd_step, pgd_step_, pgd_step_reference
from .sal import sal_project_, sal_project_reference, sal_sharpness, sal_sharpness_reference

__all__ = ["augment_batch", "augment_op", "augment_reference", "pgd_step", "pgd_step_", "pgd_step_reference",
           "sal_project_", "sal_project_reference", "sal_sharpness", "sal_sharpness_reference"]
