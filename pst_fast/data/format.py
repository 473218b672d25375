"""The canonical on-disk dataset: one directory per split.

    images.npy   uint8  (N, H, W, C)   memory-mappable, as published (poisoned images for a poison)
    labels.npy   int64  (N,)           in [0, num_classes)
    delta.npy    int8   (N|K, H, W, C) optional: poisoned - clean, per sample (N) or per class (K)
    meta.json    name, split, classes, shape, sha256 of each array and of meta.json itself, source, format_version,
                 mean/std, and for a poison: attack, params, norm, budget, seed, clean_fingerprint

Reading checks meta.json against its schema (:func:`check_meta`: types, ranges, finite numbers), shapes, dtypes,
ranges and (unless ``verify=False``) the checksums — of the arrays and, from format version 2 on, of meta.json —
and that a poison's δ is what it claims (:func:`check_delta`: within the recorded L-inf budget, and equal to
images − clean); every failure is one :class:`DataError` line naming the file. Writing is atomic: a temporary sibling directory
is filled and renamed into place. ``np.load`` is always called with ``allow_pickle=False``. ``write_poison`` writes
a poison: ``train/`` poisoned (with the clean labels and the clean fingerprint), ``test/`` the clean test split.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import temp_dir
from .limits import read_regular
from .normalization import Normalization

FORMAT_VERSION = 2  # 2: meta.json is covered by sha256.meta; 1: the arrays only (still read)
READ_VERSIONS = (1, 2)
REQUIRED_META = ("name", "split", "classes", "shape", "sha256", "source", "format_version", "mean", "std")
NORMS = ("linf", "l2", "l0", "none")
ARRAY_DTYPES = {"images": np.uint8, "labels": np.int64, "delta": np.int8}


@dataclasses.dataclass
class ImageDataset:
    """One split of a dataset: ``images`` (N,H,W,C) uint8, ``labels`` (N,) int64, optional ``delta``; a
    :class:`~pst_fast.data.split.Split`."""

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

    @property
    def norm(self) -> Normalization:
        """The normalization of its batches: meta.json's mean/std (0.5 / 0.25 per channel where it has none)."""
        c = self.images.shape[-1]
        return Normalization(self.meta.get("mean", (0.5,) * c), self.meta.get("std", (0.25,) * c))

    @property
    def skipped(self) -> list[str]:
        """Source images left out as unreadable when the split was imported (meta.json ``skipped``)."""
        return list(self.meta.get("skipped", []))

    @property
    def in_place(self) -> bool:
        """False: the split is whole uint8 arrays (``images``), not image files read in place."""
        return False

    def native_size(self) -> int | None:
        """The side of the images when they are square, else None."""
        h, w, _ = self.shape
        return h if h == w else None

    def subset(self, idx: np.ndarray) -> "ImageDataset":
        """The rows ``idx`` (sorted int64) in memory, as a split of their own; a sample-wise ``delta`` keeps their rows."""
        sample_wise = self.delta is not None and len(self.delta) == len(self)
        return dataclasses.replace(self, images=np.asarray(self.images[idx]), labels=np.asarray(self.labels[idx]),
                                   delta=np.asarray(self.delta[idx]) if sample_wise else self.delta)

    def _check_size(self, size: int) -> None:
        if size and self.shape[:2] != (size, size):
            raise DataError(f"{self.path or self.meta.get('name', 'dataset')}: images are {self.shape[0]}x{self.shape[1]} px; a "
                            f"canonical split is read at its own size, not at {size} px")

    def pixels(self, idx: np.ndarray, device="cpu", size: int = 0):
        """Rows ``idx`` as float (B, C, H, W) in [0, 1] on ``device`` (``size``: 0 or the images' own side)."""
        from .rows import array_pixels

        self._check_size(size)
        return array_pixels(self.images, idx, device)

    def rows(self, device, size: int = 0, progress: bool = False):
        """Random access to the rows, the images resident on ``device`` (:class:`~pst_fast.data.rows.Rows`)."""
        from .rows import array_rows

        self._check_size(size)
        return array_rows(self.images, device)


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


_HEX64 = re.compile("[0-9a-f]{64}")


def _describe(v) -> str:
    text = f"{type(v).__name__} {v!r}"
    return text if len(text) <= 60 else text[:57] + "..."


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _strings(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def check_meta(meta, where: str) -> None:
    """meta.json's schema, so that no later code meets a wrong type: required fields present with the right types,
    numbers finite and in range, lists of the right lengths. Raises a one-line :class:`DataError` naming ``where``."""
    if not isinstance(meta, dict):
        raise DataError(f"{where}: expected a JSON object")
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise DataError(f"{where}: missing field(s) {', '.join(missing)}")

    def need(key, ok: bool, expected: str):
        if not ok:
            raise DataError(f"{where}: {key} is {_describe(meta.get(key))}; expected {expected}")

    fv = meta["format_version"]
    need("format_version", isinstance(fv, int) and not isinstance(fv, bool) and fv in READ_VERSIONS,
         f"the integer {' or '.join(map(str, READ_VERSIONS))} (the format versions this pst_fast reads)")
    for key in ("name", "source"):
        need(key, isinstance(meta[key], str), "a string")
    need("split", meta["split"] in ("train", "test"), "'train' or 'test'")
    classes = meta["classes"]
    need("classes", _strings(classes) and len(classes) > 0 and len(set(classes)) == len(classes), "a non-empty list of distinct strings")
    shape = meta["shape"]
    need("shape", isinstance(shape, list) and len(shape) == 4 and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape)
         and shape[3] in (1, 3), "[N, H, W, C] with positive integers and C 1 or 3")
    sha = meta["sha256"]
    need("sha256", isinstance(sha, dict) and all(k in sha for k in ("images", "labels"))
         and all(k in ("images", "labels", "delta", "meta") and isinstance(v, str) and _HEX64.fullmatch(v) for k, v in sha.items())
         and (fv < 2 or "meta" in sha), "an object of 64-digit hex sha256 for images, labels (, delta)" + (", meta" if fv >= 2 else ""))
    for key, lo in (("mean", 0.0), ("std", 0.0)):
        v = meta[key]
        need(key, isinstance(v, list) and len(v) == shape[3] and all(_finite(a) and lo <= a <= 1 for a in v),
             f"{shape[3]} finite numbers in [0, 1], one per channel")
    optional = {"source_kind": (lambda v: isinstance(v, str), "a string"), "attack": (lambda v: isinstance(v, str), "a string"),
                "reference": (lambda v: isinstance(v, str), "a string"), "clean_source": (lambda v: isinstance(v, str), "a string"),
                "skipped": (_strings, "a list of strings"), "truncated": (_strings, "a list of strings"),
                "unverified": (_strings, "a list of strings"), "params": (lambda v: isinstance(v, dict), "an object"),
                "generation": (lambda v: isinstance(v, dict), "an object"), "norm": (lambda v: v in NORMS, f"one of {', '.join(NORMS)}"),
                "budget": (lambda v: v is None or (_finite(v) and v >= 0), "null or a finite number >= 0"),
                "measured_linf": (lambda v: _finite(v) and 0 <= v <= 1, "a finite number in [0, 1]"),
                "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
                "clean_fingerprint": (lambda v: isinstance(v, str) and _HEX64.fullmatch(v), "a 64-digit hex sha256")}
    for key, (ok, expected) in optional.items():
        if key in meta:
            need(key, bool(ok(meta[key])), expected)


def meta_sha256(meta: dict) -> str:
    """sha256 of meta.json's content (canonical JSON) without its own ``sha256.meta`` entry."""
    body = dict(meta, sha256={k: v for k, v in meta["sha256"].items() if k != "meta"})
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()).hexdigest()


def budget_levels(budget: float) -> int:
    """The largest |δ| in uint8 levels that an L-inf budget (pixels in [0, 1]) allows after rounding to published images."""
    return math.floor(255 * budget + 0.5 + 1e-9)


def linf_levels_of(clean: np.ndarray, poisoned: np.ndarray, rows: int = 4096) -> int:
    """max |poisoned − clean| in uint8 levels, ``rows`` images at a time."""
    return max((int(np.abs(np.asarray(poisoned[lo:lo + rows], np.int16) - np.asarray(clean[lo:lo + rows], np.int16)).max())
                for lo in range(0, len(clean), rows)), default=0)


def check_delta(d: Path, images: np.ndarray, delta: np.ndarray, meta: dict, rows: int = 4096) -> None:
    """A poison's δ against its claims: max |δ| within the recorded L-inf budget, and, for a per-sample δ, images − δ
    equal to the clean split the poison names (its sha256 with the labels' gives ``clean_fingerprint``)."""
    levels = max((int(np.abs(np.asarray(delta[lo:lo + rows], np.int16)).max()) for lo in range(0, len(delta), rows)), default=0)
    if meta.get("norm") == "linf" and _finite(meta.get("budget")) and levels > budget_levels(meta["budget"]):
        raise DataError(f"{d}/delta.npy: max |δ| is {levels}/255, over the linf budget {meta['budget']:.4g} = {255 * meta['budget']:.3g}/255 "
                        "of meta.json")
    if "clean_fingerprint" not in meta or len(delta) != len(images):
        return
    h = hashlib.sha256()
    for lo in range(0, len(images), rows):
        clean = np.asarray(images[lo:lo + rows], np.int16) - delta[lo:lo + rows]
        outside = ((clean < 0) | (clean > 255)).reshape(len(clean), -1).any(1)
        if outside.any():
            raise DataError(f"{d}/delta.npy: images − δ leaves [0, 255] at image {lo + int(np.flatnonzero(outside)[0])}: δ is not "
                            "poisoned − clean")
        h.update(np.ascontiguousarray(clean.astype(np.uint8)).reshape(-1).view(np.uint8))
    if fingerprint(h.hexdigest(), meta["sha256"]["labels"]) != meta["clean_fingerprint"]:
        raise DataError(f"{d}/delta.npy: images − δ is not the clean split this poison was made from (clean_fingerprint "
                        f"{meta['clean_fingerprint'][:12]}...): δ is not poisoned − clean")


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
    check_meta(meta | {"sha256": meta["sha256"] | {"meta": "0" * 64}}, f"{out}/meta.json")  # before anything is written
    meta["sha256"]["meta"] = meta_sha256(meta)
    tmp = temp_dir(out.parent, out.name)
    try:
        np.save(tmp / "images.npy", images)
        np.save(tmp / "labels.npy", labels)
        if delta is not None:
            np.save(tmp / "delta.npy", np.ascontiguousarray(delta))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, allow_nan=False) + "\n")
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
    tmp = temp_dir(out.parent, out.name)
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
        meta = json.loads(read_regular(p, 1 << 28))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{p}: not valid JSON ({e})") from None
    check_meta(meta, str(p))
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
        if "meta" in meta["sha256"] and meta_sha256(meta) != meta["sha256"]["meta"]:
            raise DataError(f"{d}/meta.json: sha256 mismatch with its sha256.meta (file edited or corrupted)")
        arrays = {"images": images, "labels": labels} | ({"delta": delta} if delta is not None else {})
        for name, arr in arrays.items():
            want = meta["sha256"].get(name)
            if want is None:
                raise DataError(f"{d}/meta.json: no sha256 recorded for {name}.npy")
            if sha256_array(arr) != want:
                raise DataError(f"{d}/{name}.npy: sha256 mismatch with meta.json (file changed or corrupted)")
        if delta is not None:
            check_delta(d, images, delta, meta)
    return ImageDataset(images=images, labels=labels, meta=meta, delta=delta, path=d)


def quantize(clean_u8: np.ndarray, delta01: np.ndarray) -> np.ndarray:
    """Published uint8 image round(clamp(x + δ, 0, 1) * 255) for clean uint8 x and float δ in [0,1] units (N,H,W,C)."""
    x = clean_u8.astype(np.float32) / 255.0
    return np.clip(np.rint(np.clip(x + delta01, 0.0, 1.0) * 255.0), 0, 255).astype(np.uint8)


def effective_delta(clean_u8: np.ndarray, poisoned_u8: np.ndarray) -> np.ndarray | None:
    """poisoned - clean as int8 when every entry fits, else None."""
    d = poisoned_u8.astype(np.int16) - clean_u8.astype(np.int16)
    return d.astype(np.int8) if d.min() >= -128 and d.max() <= 127 else None
