"""ImageFolder trees read in place, without an import: ``<root>/[train/|test/]<class>/<image>``.

``scan(directory)`` lists one split directory: class folders sorted as strings (a label is the index of its
class in that list, never the file system's order; a linked class folder is followed, as ``data import`` does),
images in name order within a class (regular files only: a FIFO or device is refused, never opened). Every image is
opened and decoded at reduced scale (Pillow ``draft``: 1/8 for JPEG) on a thread pool, which finds a file
that cannot be decoded before training starts and records each image's (H, W). A poison for the tree
lives apart from it (``--poison DIR``, :mod:`pst_fast.data.folder_poison`).

A directory (not a registered name) is an ImageFolder tree when neither it nor its ``train/``, ``test/`` holds a
``meta.json`` or an ``images.npy`` (the canonical format) and its split directory has sub-folders; ``scan``
checks the rest.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..errors import DataError
from .embedded import REGISTRY
from .importers import IMAGE_EXTS, SPLITS, _hidden
from .limits import check_pixels, is_regular
from .normalization import IMAGENET, Normalization
from .safe_pickle import brief


@dataclasses.dataclass
class FolderSplit:
    """One split of an ImageFolder tree: ``files`` (N paths), ``labels`` (N,) int64, ``sizes`` (N, 2) int64 (H, W).

    ``skipped`` lists the unreadable images left out (paths relative to ``root``); ``delta`` is the optional
    int8 (K|N, S, S, C) poison the loaders add (from ``--poison DIR``, memory-mapped), ``delta_sha256`` its hash.
    A :class:`~pst_fast.data.split.Split`: rows are decoded on every read, with the evaluation view at S px.
    """

    root: Path
    classes: list[str]
    files: list[str]
    labels: np.ndarray
    sizes: np.ndarray
    skipped: list[str]
    delta: np.ndarray | None = None
    delta_sha256: str = ""

    def __len__(self) -> int:
        return len(self.files)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def is_poisoned(self) -> bool:
        """True when a δ is attached (``--poison``); a poison published as image files is not recognizable."""
        return self.delta is not None

    @property
    def fingerprint(self) -> str:
        """sha256 of the file list (relative names, labels, byte sizes) and of δ's hash: which files, not which pixels."""
        h = hashlib.sha256()
        for f, y in zip(self.files, self.labels.tolist()):
            h.update(f"{os.path.relpath(f, self.root)}:{y}:{os.path.getsize(f)}\n".encode())
        if self.delta is not None:
            h.update(f"delta:{self.delta.shape}:{self.delta_sha256}".encode())
        return h.hexdigest()

    @property
    def norm(self) -> Normalization:
        """ImageNet's mean/std (a tree has no meta.json to hold its own)."""
        return IMAGENET

    @property
    def in_place(self) -> bool:
        """True: image files read in place, decoded on every read."""
        return True

    def pixels(self, idx: np.ndarray, device="cpu", size: int = 0):
        """Rows ``idx`` as float (B, 3, S, S) in [0, 1] on ``device``: decoded, the centred square of 0.875 x the short side
        resized to ``size`` px (0: native), δ added (the evaluation view, :mod:`pst_fast.data.rows`)."""
        from .rows import folder_pixels

        return folder_pixels(self, idx, device, size)

    def rows(self, device, size: int = 0, progress: bool = False):
        """Random access to the rows as :meth:`pixels` reads them, decoded once when they fit the decode cache
        (:class:`~pst_fast.data.rows.Rows`)."""
        from .rows import folder_rows

        return folder_rows(self, device, size, progress)

    def subset(self, idx: np.ndarray) -> "FolderSplit":
        """The rows ``idx`` (sorted int64) as a split of their own; a sample-wise ``delta`` keeps their rows."""
        sample_wise = self.delta is not None and len(self.delta) == len(self)
        return dataclasses.replace(self, files=[self.files[i] for i in idx], labels=self.labels[idx], sizes=self.sizes[idx],
                                   delta=np.asarray(self.delta[idx]) if sample_wise else self.delta)

    def native_size(self) -> int | None:
        """The side of the images when all are square and of one size, else None."""
        h, w = self.sizes[:, 0], self.sizes[:, 1]
        return int(h[0]) if (h == h[0]).all() and (w == h[0]).all() else None


def is_image_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an ImageFolder tree (or a single split folder) rather than a canonical dataset."""
    p = Path(path).expanduser()
    if str(path) in REGISTRY or not p.is_dir() or any((d / f).exists() for d in (p, *(p / s for s in SPLITS)) for f in ("meta.json", "images.npy")):
        return False
    split = next((p / s for s in SPLITS if (p / s).is_dir()), p)
    return any(e.is_dir() and not _hidden(e.name) for e in os.scandir(split))


def split_dir(root: str | os.PathLike, split: str) -> Path:
    """``root/split`` of a tree with split folders; ``root`` itself for ``train`` of a single split folder."""
    root = Path(root).expanduser()
    if (root / split).is_dir():
        return root / split
    if any((root / s).is_dir() for s in SPLITS):
        raise DataError(f"{root}: no {split}/ folder (expected {root}/{split}/<class>/<image>)")
    if split != "train":
        raise DataError(f"{root}: a single split folder (<class>/<image>) has no {split} split; lay it out as {root}/train and {root}/test")
    return root


def _probe(path: str) -> tuple[int, int]:
    """(H, W) of an image file after decoding it at reduced scale; raises whatever Pillow raises for a bad file."""
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
        check_pixels(h, w, path)
        im.draft("RGB", (1, 1))
        im.load()
    return h, w


def scan(directory: str | os.PathLike, on_bad_image: str = "fail", workers: int | None = None, progress: bool = False) -> FolderSplit:
    """List and check the split ``directory`` (``<class>/<image>`` inside). ``on_bad_image``: 'fail' raises on an
    unreadable image, 'skip' leaves it out and lists it in ``skipped``; ``workers`` decoding threads (default: CPUs, at most 8)."""
    d = Path(directory).expanduser()
    if on_bad_image not in ("fail", "skip"):
        raise DataError(f"on_bad_image={on_bad_image!r}: expected 'fail' or 'skip'")
    if not d.is_dir():
        raise DataError(f"{d}: no such directory")
    entries = sorted((e for e in os.scandir(d) if not _hidden(e.name)), key=lambda e: e.name)
    if any(e.is_file() and e.name.lower().endswith(IMAGE_EXTS) for e in entries):
        raise DataError(f"{d}: holds images directly; expected {d}/<class>/<image> (is --data one folder too deep?)")
    classes = [e.name for e in entries if e.is_dir()]
    if not classes:
        raise DataError(f"{d}: no class folders (expected {d}/<class>/<image> with extension {'|'.join(IMAGE_EXTS)})")
    files, labels = [], []
    for label, cls in enumerate(classes):
        names = sorted(n for n in os.listdir(d / cls) if n.lower().endswith(IMAGE_EXTS) and not _hidden(n))
        if not names:
            raise DataError(f"no images in {d / cls}")
        if irregular := [n for n in names if not is_regular(d / cls / n)]:
            raise DataError(f"{d / cls / irregular[0]}: not a regular file (a FIFO, socket, device or dangling link); only regular "
                            "files are read")
        files += [str(d / cls / n) for n in names]
        labels += [label] * len(names)
    sizes = np.zeros((len(files), 2), np.int64)
    bad = np.zeros(len(files), bool)

    def check(i: int) -> None:
        try:
            sizes[i] = _probe(files[i])
        except Exception as e:  # Pillow raises many types for corrupt data
            if on_bad_image == "fail":
                raise DataError(f"{files[i]}: unreadable image ({type(e).__name__}: {brief(e)}); --skip-bad leaves such files out") from None
            bad[i] = True

    pool = ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1))
    try:
        list(tqdm(pool.map(check, range(len(files)), chunksize=64), total=len(files), desc=f"scan {d.name}", unit="img",
                  disable=not progress, leave=False))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    labels = np.asarray(labels, np.int64)
    empty = [classes[k] for k in range(len(classes)) if not (~bad & (labels == k)).any()]
    if empty:
        raise DataError(f"no readable images in {d / empty[0]}")
    keep = np.flatnonzero(~bad)
    return FolderSplit(d, classes, [files[i] for i in keep], labels[keep], sizes[keep],
                       [os.path.relpath(files[i], d) for i in np.flatnonzero(bad)])
