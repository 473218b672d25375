"""Datasets: the canonical format, importers, the embedded ``cifar10-mini``, the device-resident loader, and ImageFolder
trees read in place (``folder``) by the DALI or fallback loader (``folder_loader``).

``load(name_or_dir, split)`` accepts a registered name (``cifar10-mini``), a directory holding
``train/`` and ``test/`` split directories, or a single split directory; ``describe`` names one for plot titles.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import DataError
from . import embedded
from .folder import is_image_folder
from .format import ImageDataset, read_dataset, write_dataset

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


def describe(name_or_dir: str | Path, poison: str | Path = "") -> str:
    """What a dataset is, for plot titles: ``cifar10-mini``, or for a poison ``cifar10-mini + em`` (the clean dataset's
    name and the attack, from meta.json), not the directory it sits in. ``poison``: an ImageFolder poison directory
    (``train --poison``) whose attack is added. A path without a readable meta.json is named by its last component."""
    key = str(name_or_dir)
    if key in embedded.REGISTRY:
        name, attack = key, None
    else:
        p = Path(key).expanduser()
        meta = _meta(p / "train") or _meta(p)
        name, attack = _text(meta, "name") or p.resolve().name, _text(meta, "attack")
    if attack is None and poison:
        attack = _text(_meta(Path(poison).expanduser()), "attack") or Path(poison).name
    return name if attack is None else f"{name.removesuffix('-' + attack)} + {attack}"


def _meta(d: Path) -> dict:
    """``d/meta.json`` as a dict; {} when it is missing or unreadable."""
    try:
        meta = json.loads((d / "meta.json").read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _text(meta: dict, key: str) -> str | None:
    return meta[key] if isinstance(meta.get(key), str) and meta[key] else None


def load(name_or_dir: str | Path, split: str = "train", verify: bool = True) -> ImageDataset:
    """Load one split (memory-mapped) after checking shapes, dtypes and, when ``verify``, checksums."""
    return read_dataset(resolve(name_or_dir, split), verify=verify)


__all__ = ["ImageDataset", "load", "resolve", "read_dataset", "write_dataset", "is_image_folder", "describe", "SPLITS"]
