"""One interface for a split of data, whatever its kind, and the one place that tells the kinds apart.

A :class:`Split` is a canonical split (:class:`~pst_fast.data.format.ImageDataset`: uint8 arrays, loaded whole) or an
ImageFolder split (:class:`~pst_fast.data.folder.FolderSplit`: image files scanned in place, decoded on every read).
Code above the data package reads either through the interface: :func:`open_splits` / :func:`open_split` open them
from ``--data`` (a registered name, a canonical directory or a tree), :func:`batch_loader` makes the batch loader of one
(the device-resident loader, or the DALI / fallback loader of a tree), ``split.pixels`` / ``split.rows`` read rows by
index as pixels in [0, 1], and ``split.norm`` says how its batches are normalized.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import DataError
from . import embedded
from .folder import FolderSplit, is_image_folder, scan, split_dir
from .format import read_dataset
from .importers import SPLITS
from .normalization import Normalization
from .rows import Rows

TREE_OPTIONS = "--loader, --image-size, --skip-bad and --poison"


class Split(Protocol):
    """One split: N labelled images in a fixed order (rows 0..N-1)."""

    classes: list[str]    # class names; a label is an index into this list
    labels: np.ndarray    # (N,) int64

    def __len__(self) -> int: ...

    @property
    def num_classes(self) -> int: ...

    @property
    def fingerprint(self) -> str: ...     # sha256 naming the exact data (canonical: pixels; tree: the file list and δ)

    @property
    def is_poisoned(self) -> bool: ...

    @property
    def norm(self) -> Normalization: ...  # how its batches are normalized

    @property
    def skipped(self) -> list[str]: ...   # images left out as unreadable when it was read (relative paths)

    @property
    def in_place(self) -> bool: ...       # image files decoded on every read (a tree), not uint8 arrays in memory

    def native_size(self) -> int | None: ...  # the side of its images when all are square and of one size

    def subset(self, idx: np.ndarray) -> "Split": ...  # the rows idx (sorted int64) as a split of their own

    def pixels(self, idx: np.ndarray, device="cpu", size: int = 0): ...  # float (B, C, S, S) in [0, 1], clean or poisoned as held

    def rows(self, device, size: int = 0, progress: bool = False) -> Rows: ...  # repeated random access to pixels


@dataclasses.dataclass(frozen=True)
class Reading:
    """How a run reads its splits (its options): ``loader`` (auto, dali or fallback) and ``image_size`` (px; 0 = the
    training split's native side) for trees, ``crop_pad`` (random crop) and ``pad_mode`` (its padding: 'zero' or 'reflect')
    for canonical splits, ``flip`` and ``alternate_flip`` (:func:`~pst_fast.data.loader.alternating_flips` instead of random
    ones) for both."""

    loader: str = "auto"
    image_size: int = 0
    crop_pad: int = 4
    flip: bool = True
    alternate_flip: bool = False
    pad_mode: str = "zero"

    def at(self, train: Split) -> "Reading":
        """This reading with ``image_size`` 0 resolved to ``train``'s native side: every split of a run is read at one size."""
        return dataclasses.replace(self, image_size=self.image_size or train.native_size() or 0)


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


def open_split(name_or_dir: str | Path, split: str = "train", reading: Reading = Reading(), *, skip_bad: bool = False,
               poison: str | Path = "", needs_arrays: str = "", progress: bool = False) -> Split:
    """One split of ``--data``: a canonical split, or a split of an ImageFolder tree scanned in place (``skip_bad``: leave
    unreadable images out) with ``poison``'s δ attached (the training split, read at ``reading``'s size).
    ``needs_arrays`` names what needs uint8 arrays (e.g. ``attack tap``): a tree is then refused before it is scanned."""
    if not is_image_folder(name_or_dir):
        if reading.loader != "auto" or reading.image_size or skip_bad or poison:
            raise DataError(f"--data {name_or_dir}: {TREE_OPTIONS} apply to ImageFolder trees, not to a canonical dataset "
                            "(a canonical poison is itself the --data)")
        return read_dataset(resolve(name_or_dir, split))
    if needs_arrays:
        raise DataError(f"--data {name_or_dir}: an ImageFolder tree; {needs_arrays} reads the canonical format "
                        f"(pst-fast data import {name_or_dir} --out DIR)")
    out = scan(split_dir(name_or_dir, split), "skip" if skip_bad else "fail", progress=progress)
    if poison:
        from .folder_poison import load_folder_poison

        delta, meta = load_folder_poison(poison, out, reading.at(out).image_size)
        out = dataclasses.replace(out, delta=delta, delta_sha256=meta["sha256"])
    return out


def open_splits(name_or_dir: str | Path, reading: Reading = Reading(), *, skip_bad: bool = False, poison: str | Path = "",
                val_split: int = 0, needs_arrays: str = "", progress: bool = False) -> tuple[Split, Split]:
    """(train, test) of ``--data``, as :func:`open_split` opens each (``poison`` goes to the training split), checked
    against each other; ``val_split`` > 0 replaces the test split by that many held-out training images (canonical only)."""
    if val_split and is_image_folder(name_or_dir):
        raise DataError(f"--val-split {val_split}: carves from a canonical dataset, not an ImageFolder tree "
                        f"(pst-fast data import {name_or_dir} --out DIR)")
    kw = dict(skip_bad=skip_bad, needs_arrays=needs_arrays, progress=progress)
    train, test = open_split(name_or_dir, "train", reading, poison=poison, **kw), open_split(name_or_dir, "test", reading, **kw)
    if isinstance(train, FolderSplit):
        if train.classes != test.classes:
            raise DataError(f"--data {name_or_dir}: train/ and test/ hold different class folders")
        return train, test
    if train.classes != test.classes:
        raise DataError(f"--data {name_or_dir}: train and test splits list different classes")
    if train.shape != test.shape:
        raise DataError(f"--data {name_or_dir}: train images are {'x'.join(map(str, train.shape))}, test images "
                        f"{'x'.join(map(str, test.shape))} (H x W x C); both splits need one size")
    if val_split:
        from .validation import carve

        return carve(train, val_split)
    return train, test


def batch_loader(split: Split, batch_size: int, *, shuffle: bool = True, seed: int = 0, augment: bool = True, drop_last: bool | None = None,
           reading: Reading = Reading(), resized_crops: bool = True, norm: Normalization | None = None, layout: str = "nchw",
           device="cpu"):
    """The batch loader of ``split`` (a :class:`~pst_fast.data.loader.BatchLoader`): the device-resident loader of a canonical
    split (``augment``: random crop and flip), the DALI or fallback loader of a tree (``augment``: random resized crop and
    flip; ``resized_crops=False`` reads a tree with its evaluation view even then). ``norm``: default the split's."""
    if isinstance(split, FolderSplit):
        from .folder_loader import folder_loader

        return folder_loader(reading.loader, split, batch_size=batch_size, image_size=reading.image_size, shuffle=shuffle, seed=seed,
                             augment=augment and resized_crops, drop_last=drop_last, flip=reading.flip, alternate_flip=reading.alternate_flip,
                             norm=norm, layout=layout, device=device)
    from .loader import DeviceLoader

    return DeviceLoader(split, batch_size, shuffle=shuffle, seed=seed, augment=augment, drop_last=drop_last, crop_pad=reading.crop_pad,
                        pad_mode=reading.pad_mode, flip=reading.flip, alternate_flip=reading.alternate_flip, norm=norm, layout=layout, device=device)
