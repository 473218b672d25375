"""Datasets: the canonical format, importers, the embedded ``cifar10-mini``, the device-resident loader, and ImageFolder
trees read in place (``folder``) by the DALI or fallback loader (``folder_loader``).

Both kinds are a :class:`Split` (``split``): ``open_splits`` / ``open_split`` open ``--data`` whatever its kind,
``batch_loader`` makes a split's batch loader, and every batch is normalized by its :class:`Normalization`.
``load(name_or_dir, split)`` accepts a registered name (``cifar10-mini``), a directory holding
``train/`` and ``test/`` split directories, or a single split directory; ``describe`` names one for plot titles.
"""
from __future__ import annotations

import json
from pathlib import Path

from . import embedded
from .folder import is_image_folder
from .format import ImageDataset, read_dataset, write_dataset
from .importers import SPLITS
from .normalization import Normalization
from .split import Reading, Split, batch_loader, open_split, open_splits, resolve


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


__all__ = ["ImageDataset", "load", "resolve", "read_dataset", "write_dataset", "is_image_folder", "describe", "SPLITS", "Split",
           "Normalization", "Reading", "open_split", "open_splits", "batch_loader"]
