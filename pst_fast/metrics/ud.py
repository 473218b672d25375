"""UD — unlearnable distance between a clean run and poisoned runs, from their SAL records.

β: for each measured epoch t, the optimal 2-means split of the clean run's per-layer SAL values; β_t is the
midpoint of the two centres and β the mean over epochs. λ(t) = number of layers with SAL > β.
UD = Σ_t λ_poisoned(t) / Σ_t λ_clean(t) over the same epochs: 1 for a clean run, lower = more unlearnable.
The official analysis uses scikit-learn's KMeans for the 2-means; in one dimension the optimum is found
exactly by trying every split of the sorted values, which is what this module does.

The clean run a poisoned run is compared with is, as in the official ``get_ud.py`` (one suffix for every run),
the clean run trained with the same defense (``reference="same-defense"``); ``reference="standard"`` compares
every run with the clean run of standard training instead (pst_fast's earlier sweeps; not official).
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


REFERENCES = ("same-defense", "standard")


def _defense(rec: SALRecord) -> tuple[str, str]:
    return rec.meta.get("defense", "standard"), rec.meta.get("defense_args", "")


def pick_reference(cleans: list[tuple[str, SALRecord]], rec: SALRecord, name: str, reference: str) -> tuple[str, SALRecord]:
    """The (directory, record) among ``cleans`` that run ``name`` is compared with under ``reference``."""
    if reference not in REFERENCES:
        raise PstFastError(f"--reference {reference!r}: expected one of {', '.join(REFERENCES)}")
    want = _defense(rec) if reference == "same-defense" else ("standard", "")
    for d, clean in cleans:
        if _defense(clean) == want:
            return d, clean
    have = ", ".join(f"{c[0]}{' (' + c[1] + ')' if c[1] else ''}" for c in (_defense(r) for _, r in cleans))
    raise PstFastError(f"{name}: --reference {reference} needs a clean run trained with defense {want[0]}"
                       f"{' (' + want[1] + ')' if want[1] else ''} among --clean (given: {have})")


def unlearnable_distance(clean_dirs: str | Path | list, poisoned_dirs: list[str | Path], reference: str = "same-defense") -> dict:
    """{"beta", "clean", "epochs", "runs": [{"run", "clean", "beta", "lp", "ud", "lambda", "poisoned", "data", "defense"}]}:
    each run against its ``reference`` among ``clean_dirs`` (one directory or several); ``lp`` is the mean number of
    learnable layers per measured epoch (#LP), ``lambda`` the per-epoch counts. The top-level "beta" and "clean" are those
    of the first clean run."""
    cleans = [(str(d), SALRecord.load(d)) for d in (clean_dirs if isinstance(clean_dirs, (list, tuple)) else [clean_dirs])]
    refs = {}
    for d, clean in cleans:
        if clean.meta.get("poisoned"):
            raise PstFastError(f"--clean {d}: trained on a poisoned dataset ({clean.meta.get('data')}); expected a clean run")
        beta = threshold(clean.matrix())
        lam = learnable_layers(clean.matrix(), beta)
        if lam.sum() == 0:
            raise PstFastError(f"--clean {d}: no layer of the clean run exceeds β = {beta:.4g}; UD is undefined")
        refs[d] = {"run": d, "beta": beta, "lp": float(lam.mean()), "lambda": lam.tolist()}
    runs = []
    for d in poisoned_dirs:
        rec = SALRecord.load(d)
        ref_dir, clean = pick_reference(cleans, rec, str(d), reference)
        check_comparable(clean, rec, ref_dir, str(d))
        ref = refs[ref_dir]
        lam = learnable_layers(rec.matrix(), ref["beta"])
        runs.append({"run": str(d), "clean": ref_dir, "beta": ref["beta"], "lp": float(lam.mean()),
                     "ud": float(lam.sum() / sum(ref["lambda"])), "lambda": lam.tolist(), "poisoned": bool(rec.meta.get("poisoned")),
                     "data": rec.meta.get("data"), "defense": rec.meta.get("defense", "standard")})
    first = refs[cleans[0][0]]
    return {"beta": first["beta"], "clean": first, "reference": reference, "epochs": [e + 1 for e in cleans[0][1].epochs],
            "cleans": list(refs.values()), "runs": runs}
