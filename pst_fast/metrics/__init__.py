"""Metrics beyond accuracy: SAL (per-layer sharpness-aware learnability) and UD (unlearnable distance)."""
from .sal import SALConfig, SALData, SALResult, make_sal_data, sal_epoch, sal_layers

__all__ = ["SALConfig", "SALData", "SALResult", "make_sal_data", "sal_epoch", "sal_layers"]
