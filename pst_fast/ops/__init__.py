"""Fused ops, each with a torch reference, a C++ CPU path and a Triton GPU path, registered as torch.library custom ops."""
from .augment import augment_batch, augment_op, augment_reference
from .pgd import pgd_step, pgd_step_, pgd_step_reference
from .sal import sal_project_, sal_project_reference, sal_sharpness, sal_sharpness_reference

__all__ = ["augment_batch", "augment_op", "augment_reference", "pgd_step", "pgd_step_", "pgd_step_reference",
           "sal_project_", "sal_project_reference", "sal_sharpness", "sal_sharpness_reference"]
