"""Datasets: the canonical format, importers, the embedded ``cifar10-mini``, the device-resident loader, and ImageFolder
trees read in place (``folder``) by the DALI or fallback loader (``folder_loader``).

``load(name_or_dir, split)`` accepts a registered name (``cifar10-mini``), a directory holding
``train/`` and ``test/`` split directories, or a single split directory.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .folder import is_image_folder
from .format import ImageDataset, read_dataset, write_dataset
from . import embedded

SPLITS = ("train", "test")


def resolve(name_or_dir: str | Path, split: str) -> Path:
    """The directory of ``split`` for a registered name or a path."""
    if split not in SPLITS:
        raise DataError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    key = str(name_or_dir)
    if key in embedded.REGISTRY:
        return embedded.materialize(key) / split
    p = Path(key).expanduser()
    if (p / split / "meta.json").is_file():
        return p / split
    if (p / "meta.json").is_file():
        return p
    if not p.exists():
        raise DataError(
            f"--data {key}: no such dataset (registered names: {', '.join(embedded.REGISTRY)}; "
            "or a directory with train/ and test/ made by 'pst-fast data import')"
        )
    raise DataError(f"--data {key}: expected {p / split}/meta.json (a directory made by 'pst-fast data import')")


def load(name_or_dir: str | Path, split: str = "train", verify: bool = True) -> ImageDataset:
    """Load one split (memory-mapped) after checking shapes, dtypes and, when ``verify``, checksums."""
    return read_dataset(resolve(name_or_dir, split), verify=verify)


__all__ = ["ImageDataset", "load", "resolve", "read_dataset", "write_dataset", "is_image_folder", "SPLITS"]
