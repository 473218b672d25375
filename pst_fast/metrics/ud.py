"""UD — unlearnable distance between a clean run and poisoned runs, from their SAL records.

β: for each measured epoch t, the optimal 2-means split of the clean run's per-layer SAL values; β_t is the
midpoint of the two centres and β the mean over epochs. λ(t) = number of layers with SAL > β.
UD = Σ_t λ_poisoned(t) / Σ_t λ_clean(t) over the same epochs: 1 for a clean run, lower = more unlearnable.
The official analysis uses scikit-learn's KMeans for the 2-means; in one dimension the optimum is found
exactly by trying every split of the sorted values, which is what this module does.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import PstFastError
from .record import SALRecord

MUST_MATCH = ("model", "train_epochs", "sal_config")


def two_means_threshold(values: np.ndarray) -> float:
    """Midpoint of the two centres of the optimal 2-means clustering of 1-D ``values``."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    if v.size < 2 or v[0] == v[-1]:
        return float(v[0]) if v.size else 0.0
    csum, csq = np.cumsum(v), np.cumsum(v * v)
    k = np.arange(1, v.size)
    left = csq[:-1] - csum[:-1] ** 2 / k
    right = (csq[-1] - csq[:-1]) - (csum[-1] - csum[:-1]) ** 2 / (v.size - k)
    i = int(np.argmin(left + right))  # first i+1 values form the low cluster
    return float((v[: i + 1].mean() + v[i + 1 :].mean()) / 2)


def threshold(clean_sal: np.ndarray) -> float:
    """β: mean over epochs (rows of the (E, L) SAL matrix) of the per-epoch 2-means midpoint."""
    if clean_sal.shape[0] == 0:
        raise PstFastError("the clean run has no SAL epochs")
    return float(np.mean([two_means_threshold(row) for row in clean_sal]))


def learnable_layers(sal: np.ndarray, beta: float) -> np.ndarray:
    """λ(t): number of layers with SAL > β per epoch, (E,)."""
    return (sal > beta).sum(axis=1)


def check_comparable(clean: SALRecord, other: SALRecord, clean_name: str, other_name: str) -> None:
    """Refuse pairs the official analysis would silently compare wrongly, naming the run and the field."""
    if clean.meta.get("poisoned"):
        raise PstFastError(f"--clean {clean_name}: trained on a poisoned dataset ({clean.meta.get('data')}); expected a clean run")
    for key in MUST_MATCH:
        if clean.meta.get(key) != other.meta.get(key):
            raise PstFastError(f"{other_name}: {key} {other.meta.get(key)!r} differs from the clean run's {clean.meta.get(key)!r}")
    if clean.layers != other.layers:
        raise PstFastError(f"{other_name}: measures {len(other.layers)} layers, the clean run {len(clean.layers)} (different layer sets)")
    if clean.epochs != other.epochs:
        raise PstFastError(f"{other_name}: SAL measured after epochs {[e + 1 for e in other.epochs]}, the clean run after "
                           f"{[e + 1 for e in clean.epochs]}; UD needs the same epochs (finish both runs)")


def unlearnable_distance(clean_dir: str | Path, poisoned_dirs: list[str | Path]) -> dict:
    """{"beta", "clean": {...}, "runs": [{"run", "lp", "ud", "lambda", "poisoned", "data"}]}; ``lp`` is the mean
    number of learnable layers per measured epoch (#LP), ``lambda`` the per-epoch counts."""
    clean = SALRecord.load(clean_dir)
    beta = threshold(clean.matrix())
    lam_clean = learnable_layers(clean.matrix(), beta)
    if lam_clean.sum() == 0:
        raise PstFastError(f"--clean {clean_dir}: no layer of the clean run exceeds β = {beta:.4g}; UD is undefined")
    runs = []
    for d in poisoned_dirs:
        rec = SALRecord.load(d)
        check_comparable(clean, rec, str(clean_dir), str(d))
        lam = learnable_layers(rec.matrix(), beta)
        runs.append({"run": str(d), "lp": float(lam.mean()), "ud": float(lam.sum() / lam_clean.sum()), "lambda": lam.tolist(),
                     "poisoned": bool(rec.meta.get("poisoned")), "data": rec.meta.get("data")})
    return {"beta": beta, "clean": {"run": str(clean_dir), "lp": float(lam_clean.mean()), "lambda": lam_clean.tolist()},
            "epochs": [e + 1 for e in clean.epochs], "runs": runs}
