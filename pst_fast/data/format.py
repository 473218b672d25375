"""The canonical on-disk dataset: one directory per split.

    images.npy   uint8  (N, H, W, C)   memory-mappable, as published (poisoned images for a poison)
    labels.npy   int64  (N,)           in [0, num_classes)
    delta.npy    int8   (N|K, H, W, C) optional: poisoned - clean, per sample (N) or per class (K)
    meta.json    name, split, classes, shape, sha256 of each array, source, format_version, and for a
                 poison: attack, params, norm, budget, seed, clean_fingerprint

Reading verifies shapes, dtypes, ranges and (unless ``verify=False``) checksums, and raises
:class:`DataError` with one line naming the file. Writing is atomic: a temporary sibling directory
is filled and renamed into place. ``np.load`` is always called with ``allow_pickle=False``. ``write_poison`` writes
a poison: ``train/`` poisoned (with the clean labels and the clean fingerprint), ``test/`` the clean test split.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..errors import DataError

FORMAT_VERSION = 1
REQUIRED_META = ("name", "split", "classes", "shape", "sha256", "source", "format_version")
ARRAY_DTYPES = {"images": np.uint8, "labels": np.int64, "delta": np.int8}


@dataclasses.dataclass
class ImageDataset:
    """One split of a dataset: ``images`` (N,H,W,C) uint8, ``labels`` (N,) int64, optional ``delta``."""

    images: np.ndarray
    labels: np.ndarray
    meta: dict
    delta: np.ndarray | None = None
    path: Path | None = None

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def num_classes(self) -> int:
        return len(self.meta["classes"])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image."""
        return tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def fingerprint(self) -> str:
        """sha256 of images and labels together; identifies the exact data a run trained on."""
        return fingerprint(self.meta["sha256"]["images"], self.meta["sha256"]["labels"])

    @property
    def is_poisoned(self) -> bool:
        return "attack" in self.meta


def fingerprint(images_sha: str, labels_sha: str) -> str:
    return hashlib.sha256(f"{images_sha}:{labels_sha}".encode()).hexdigest()


def sha256_array(a: np.ndarray, chunk: int = 1 << 24) -> str:
    """sha256 of an array's raw C-order bytes (streams memory-mapped arrays in 16 MiB chunks)."""
    h = hashlib.sha256()
    flat = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    for start in range(0, flat.size, chunk):
        h.update(flat[start : start + chunk])
    return h.hexdigest()


def channel_stats(images: np.ndarray, max_images: int = 10000) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of pixel values in [0, 1], over at most ``max_images`` evenly spaced images.

    Computed exactly from per-channel 256-bin histograms (one pass, no float copy of the images).
    """
    step = max(1, len(images) // max_images)
    c = images.shape[-1]
    x = np.ascontiguousarray(images[::step]).reshape(-1, c)
    hist = np.stack([np.bincount(x[:, k], minlength=256) for k in range(c)]).astype(np.float64)
    v = np.arange(256) / 255.0
    n = hist.sum(1)
    mean = hist @ v / n
    std = np.sqrt(np.maximum(hist @ (v * v) / n - mean**2, 0.0))
    return [float(a) for a in mean], [float(a) for a in std]


def validate_arrays(images: np.ndarray, labels: np.ndarray, num_classes: int, delta: np.ndarray | None, where: str) -> None:
    """Raise DataError (naming ``where``) unless the arrays form a consistent dataset."""
    if images.dtype != np.uint8:
        raise DataError(f"{where}/images.npy: expected dtype uint8, got {images.dtype}")
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DataError(f"{where}/images.npy: expected shape (N, H, W, C) with C in (1, 3), got {images.shape}")
    if labels.dtype != np.int64:
        raise DataError(f"{where}/labels.npy: expected dtype int64, got {labels.dtype}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{where}/labels.npy: expected shape ({len(images)},) to match images.npy, got {labels.shape}")
    if len(labels) == 0:
        raise DataError(f"{where}: the dataset is empty")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        raise DataError(f"{where}/labels.npy: labels must lie in [0, {num_classes}), found [{lo}, {hi}]")
    if delta is not None:
        if delta.dtype != np.int8:
            raise DataError(f"{where}/delta.npy: expected dtype int8, got {delta.dtype}")
        if delta.shape[1:] != images.shape[1:] or delta.shape[0] not in (len(images), num_classes):
            raise DataError(
                f"{where}/delta.npy: expected shape (N={len(images)} or K={num_classes}, {', '.join(map(str, images.shape[1:]))}), got {delta.shape}"
            )


def write_dataset(
    out: str | os.PathLike,
    images: np.ndarray,
    labels: np.ndarray,
    meta: dict,
    delta: np.ndarray | None = None,
    overwrite: bool = False,
) -> ImageDataset:
    """Write one split atomically to directory ``out``; fills shape, sha256 and format_version into meta.

    ``meta`` must hold at least name, split, classes and source. Returns the dataset as read back (memory-mapped).
    """
    out = Path(out)
    images = np.ascontiguousarray(images)
    labels = np.ascontiguousarray(labels)
    missing = [k for k in ("name", "split", "classes", "source") if k not in meta]
    if missing:
        raise DataError(f"{out}/meta.json: missing field(s) {', '.join(missing)}")
    validate_arrays(images, labels, len(meta["classes"]), delta, str(out))
    if out.exists() and not overwrite:
        raise DataError(f"{out}: output directory exists (choose another --out or remove it)")
    meta = dict(meta)
    meta["shape"] = list(images.shape)
    meta["format_version"] = FORMAT_VERSION
    meta["sha256"] = {"images": sha256_array(images), "labels": sha256_array(labels)}
    if delta is not None:
        meta["sha256"]["delta"] = sha256_array(delta)
    if "mean" not in meta:
        meta["mean"], meta["std"] = channel_stats(images)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        np.save(tmp / "images.npy", images)
        np.save(tmp / "labels.npy", labels)
        if delta is not None:
            np.save(tmp / "delta.npy", np.ascontiguousarray(delta))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return read_dataset(out, verify=False)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def write_poison(out: str | os.PathLike, train: ImageDataset, test: ImageDataset, images: np.ndarray,
                 delta: np.ndarray | None, meta: dict) -> Path:
    """Write a poison of the clean split ``train`` atomically and return ``out``.

    ``out/train``: ``images`` (uint8, ``train``'s shape) with ``train``'s labels, ``delta`` and ``meta`` (at least
    name, source and attack) completed with split, classes, clean_fingerprint, clean_source and ``train``'s mean/std.
    ``out/test``: the files of the clean ``test`` split (hard links when possible).
    """
    out = Path(out)
    if out.exists():
        raise DataError(f"{out}: output directory exists (choose another --out or remove it)")
    meta = {**meta, "split": "train", "classes": train.classes, "clean_fingerprint": train.fingerprint,
            "clean_source": str(train.path), "mean": train.meta["mean"], "std": train.meta["std"]}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        write_dataset(tmp / "train", images, np.asarray(train.labels), meta, delta=delta)
        (tmp / "test").mkdir()
        for name in ("images.npy", "labels.npy", "meta.json"):
            _link_or_copy(Path(test.path) / name, tmp / "test" / name)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _load_npy(path: Path, name: str, mmap: bool) -> np.ndarray:
    """np.load without pickle, turning every failure into one line naming the file."""
    if not path.is_file():
        raise DataError(f"{path}: missing file")
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            offset = f.tell()
    except (ValueError, OSError, SyntaxError) as e:
        raise DataError(f"{path}: not a valid .npy file ({e})") from None
    if dtype.hasobject:
        raise DataError(f"{path}: object arrays are refused (no pickle); expected dtype {np.dtype(ARRAY_DTYPES[name])}")
    if fortran:
        raise DataError(f"{path}: expected a C-order array")
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    if size < expected:
        raise DataError(f"{path}: truncated file ({size} bytes, header promises {expected})")
    if np.dtype(ARRAY_DTYPES[name]) != dtype:
        raise DataError(f"{path}: expected dtype {np.dtype(ARRAY_DTYPES[name])}, got {dtype}")
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def read_meta(directory: str | os.PathLike) -> dict:
    d = Path(directory)
    p = d / "meta.json"
    if not d.is_dir():
        raise DataError(f"{d}: not a dataset directory (expected images.npy, labels.npy, meta.json)")
    if not p.is_file():
        raise DataError(f"{p}: missing file")
    try:
        meta = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{p}: expected a JSON object")
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise DataError(f"{p}: missing field(s) {', '.join(missing)}")
    if meta["format_version"] != FORMAT_VERSION:
        raise DataError(f"{p}: format_version {meta['format_version']} is not supported (expected {FORMAT_VERSION})")
    return meta


def read_dataset(directory: str | os.PathLike, verify: bool = True, mmap: bool = True) -> ImageDataset:
    """Read and check one split directory. ``verify=False`` skips the sha256 checks (shapes are always checked)."""
    d = Path(directory)
    meta = read_meta(d)
    images = _load_npy(d / "images.npy", "images", mmap)
    labels = _load_npy(d / "labels.npy", "labels", mmap)
    delta = _load_npy(d / "delta.npy", "delta", mmap) if (d / "delta.npy").exists() else None
    if list(images.shape) != list(meta["shape"]):
        raise DataError(f"{d}/images.npy: shape {list(images.shape)} differs from meta.json shape {meta['shape']}")
    validate_arrays(images, labels, len(meta["classes"]), delta, str(d))
    if verify:
        arrays = {"images": images, "labels": labels} | ({"delta": delta} if delta is not None else {})
        for name, arr in arrays.items():
            want = meta["sha256"].get(name)
            if want is None:
                raise DataError(f"{d}/meta.json: no sha256 recorded for {name}.npy")
            if sha256_array(arr) != want:
                raise DataError(f"{d}/{name}.npy: sha256 mismatch with meta.json (file changed or corrupted)")
    return ImageDataset(images=images, labels=labels, meta=meta, delta=delta, path=d)
