"""A validation split carved from the training images, for choosing defaults without touching the test split.

``carve(train, n)`` holds out ``n`` class-balanced training images (the same draw for every run and seed, so
runs compare) and returns the training split without them and a validation split of their **clean** versions:
for a poison, clean = published − δ (``delta.npy``), or the recorded clean source dataset when the poison
stores no δ. A poison's validation accuracy is therefore what its test accuracy estimates: how well the model
does on clean images it never trained on.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import DataError
from .format import ImageDataset, read_dataset, sha256_array

DRAW_SEED = 20240601  # fixed: every run of every seed holds out the same images


def holdout_indices(labels: np.ndarray, num_classes: int, n: int) -> np.ndarray:
    """Sorted indices of ``n // num_classes`` images of every class, drawn with the fixed :data:`DRAW_SEED`."""
    rng = np.random.default_rng(DRAW_SEED)
    per_class = n // num_classes
    picks = []
    for k in range(num_classes):
        members = np.flatnonzero(labels == k)
        if len(members) < 2 * per_class:
            raise DataError(f"--val-split {n}: class {k} has {len(members)} training images; at most half of each class may be held out")
        picks.append(rng.permutation(members)[:per_class])
    return np.sort(np.concatenate(picks))


def clean_images(train: ImageDataset, idx: np.ndarray) -> np.ndarray:
    """The clean (unpoisoned) uint8 images ``idx`` of ``train``: the images themselves when ``train`` is clean."""
    images = np.asarray(train.images[idx])
    if not train.is_poisoned:
        return images
    if train.delta is not None:
        delta = train.delta[idx] if len(train.delta) == len(train) else train.delta[np.asarray(train.labels)[idx]]
        return (images.astype(np.int16) - delta).astype(np.uint8)
    source = train.meta.get("clean_source")
    try:
        clean = read_dataset(source, verify=False)
    except (DataError, TypeError):
        raise DataError(f"{train.path}: a poison without delta.npy whose clean source {source!r} cannot be read; "
                        "the validation split needs the clean images") from None
    if clean.fingerprint != train.meta.get("clean_fingerprint"):
        raise DataError(f"{source}: not the clean data the poison {train.path} was made from (clean_fingerprint differs)")
    return np.asarray(clean.images[idx])


def _subset(ds: ImageDataset, images: np.ndarray, labels: np.ndarray, delta, meta: dict) -> ImageDataset:
    sha = {"images": sha256_array(images), "labels": sha256_array(labels)}
    return dataclasses.replace(ds, images=images, labels=labels, delta=delta, meta={**meta, "sha256": sha, "shape": list(images.shape)})


def carve(train: ImageDataset, n: int) -> tuple[ImageDataset, ImageDataset]:
    """(``train`` without the held-out images, the validation split: their clean versions, unpoisoned)."""
    if n < train.num_classes:
        raise DataError(f"--val-split {n}: expected at least one image per class ({train.num_classes})")
    labels = np.asarray(train.labels)
    held = holdout_indices(labels, train.num_classes, n)
    keep = np.setdiff1d(np.arange(len(labels)), held)
    sample_delta = train.delta is not None and len(train.delta) == len(train)
    delta = np.asarray(train.delta[keep]) if sample_delta else train.delta
    rest = _subset(train, np.asarray(train.images[keep]), labels[keep], delta, {**train.meta, "validation_split": n})
    val_meta = {k: v for k, v in train.meta.items() if k in ("name", "classes", "mean", "std", "source")} | {"split": "val"}
    val = _subset(train, clean_images(train, held), labels[held], None, val_meta)
    return rest, val


__all__ = ["carve", "clean_images", "holdout_indices"]
