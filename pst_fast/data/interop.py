"""Interop with other codebases: the per-index PNG folders of APBench and the UD code, EM's and REM's perturbations.

**PNG folders** (``export_png``, and ``import_poison`` of a directory), as APBench writes them
(lafeat/apbench ``poisons_generate.py``: ``export_poison``, ``export_imagenet_poison``) and APBench and the UD
code read them (lafeat/apbench ``util.py`` and MLsecurityLab/HowFarAreFromTrueUnlearnability ``util_sharp.py``:
``Dataset_load``, ``get_dataset``)::

    flat    OUT/data/<i>.png       CIFAR-10/100, SVHN: i = the image's index in the clean training set (decimal);
                                   the readers take image i's label from the clean set
    class   OUT/<label>/<i>.png    APBench's ImageNet-100 export, read with torchvision's ImageFolder

Every image is a lossless RGB (or grayscale) PNG. ``OUT/pst_fast.json``, which neither reader looks at, records the
labels, the clean fingerprint, the sha256 of the arrays and the poison's meta, so an import restores the poison bit
for bit; a folder without it (made by APBench) imports too, with the clean labels (flat) or the folders' (class).

**Perturbation files** (``import_poison`` of a file), added to the clean training set; the first dimension is N
(one δ per image) or K (one per class; N when N = K)::

    EM   perturbation.pt    torch.save of a float tensor (N|K, C, H, W), δ in [0, 1] pixel units
                            (HanxunH/Unlearnable-Examples perturbation.py); read with torch.load(weights_only=True)
                            and quantized as pst_fast's attacks are: round(clamp(x + δ, 0, 1) · 255)
    REM  *-def-noise.pkl    pickle.dump of an int8 array (N, C, H, W) in pixel units (fshp971/robust-unlearnable-examples
                            generate_robust_em.py); applied as clip(x + δ, 0, 255) like its utils/generic.py

A zip archive is read as a torch file, anything else as a pickle: a pickle can run code while it loads, so it is
read only with ``trust_pickle=True`` (``--trust-pickle``), and a warning goes to stderr. Every result is a canonical
poison of the clean set (``out/train`` with δ = poisoned − clean, ``out/test`` the clean test split), written
atomically.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..errors import DataError
from ..io import check_out, temp_dir
from . import load
from .format import ImageDataset, budget_levels, effective_delta, linf_levels_of, quantize, read_dataset, sha256_array, write_poison
from .importers import check_source_and_out, decode_files, disk_bytes
from .limits import check_expansion, read_regular
from .safe_pickle import brief

LAYOUTS = ("flat", "class")
CLAIMS = ("attack", "params", "seed", "norm", "budget", "reference", "generation")  # what a pst_fast.json says of how a poison was made
SIDECAR = "pst_fast.json"
CHUNK = 4096  # images per step when applying a perturbation (bounds the float32 temporaries)
_INDEX_PNG = re.compile(r"([0-9]+)\.png")


# ---------------------------------------------------------------- PNG folders

def _png_path(layout: str, i: int, label: int) -> str:
    return f"data/{i}.png" if layout == "flat" else f"{label}/{i}.png"


def export_png(poison, out, layout: str = "flat", workers: int | None = None, progress: bool = True) -> Path:
    """Write the training split of ``poison`` (a registered name or a directory) as per-index PNGs in ``out``.

    ``layout``: 'flat' (``out/data/<i>.png``) or 'class' (``out/<label>/<i>.png``); plus ``out/pst_fast.json``.
    ``workers`` threads encode (default: the CPU count, at most 8). Returns ``out``.
    """
    if layout not in LAYOUTS:
        raise DataError(f"layout={layout!r}: expected one of {', '.join(LAYOUTS)}")
    out = Path(out).expanduser()
    if out.exists():
        raise DataError(f"{out}: output directory exists (choose another --out or remove it)")
    check_out(out)
    ds = load(poison, "train")
    labels = np.asarray(ds.labels)
    rel = [_png_path(layout, i, int(y)) for i, y in enumerate(labels)]
    side = {"format": "apbench-png", "layout": layout, "count": len(ds), "shape": list(ds.shape), "classes": ds.classes,
            "sha256": ds.meta["sha256"], "meta": {k: v for k, v in ds.meta.items() if k not in ("shape", "sha256", "format_version", "split")},
            "labels": labels.tolist()}
    tmp = temp_dir(out.parent, out.name)

    def write(i: int) -> None:
        from PIL import Image

        im = np.asarray(ds.images[i])
        Image.fromarray(im if im.shape[-1] == 3 else im[..., 0]).save(tmp / rel[i], format="PNG")

    try:
        for d in sorted({r.rsplit("/", 1)[0] for r in rel}):
            (tmp / d).mkdir()
        pool = ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1))
        try:
            for _ in tqdm(pool.map(write, range(len(ds))), total=len(ds), desc="write png", unit="img", disable=not progress):
                pass
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        (tmp / SIDECAR).write_text(json.dumps(side, indent=1) + "\n")
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _read_sidecar(src: Path, train: ImageDataset) -> dict | None:
    """``src/pst_fast.json`` checked against the clean set, or None when the folder has none."""
    p = src / SIDECAR
    if not p.is_file():
        return None
    text = read_regular(p, 1 << 28)
    try:
        side = json.loads(text)
        labels = np.asarray(side["labels"], np.int64)
        if not (isinstance(side["meta"], dict) and isinstance(side["sha256"]["images"], str)):
            raise TypeError("meta must be an object and sha256.images a string")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
        raise DataError(f"{p}: not a pst_fast.json written by 'pst-fast data export' ({type(e).__name__}: {brief(e)})") from None
    if labels.shape != train.labels.shape:
        raise DataError(f"{p}: records {len(labels)} images, the clean set has {len(train)}")
    if (bad := np.flatnonzero(labels != train.labels)).size:
        i = int(bad[0])
        raise DataError(f"{p}: image {i} has label {labels[i]} here and {train.labels[i]} in the clean set (exported from another dataset?)")
    if side["meta"].get("clean_fingerprint", train.fingerprint) != train.fingerprint:
        raise DataError(f"{p}: exported from a poison of other clean data (clean_fingerprint differs); pass the --clean it was made from")
    return side


def _png_files(src: Path, train: ImageDataset) -> list[tuple[str, Path]]:
    """(relative name, path) of the PNG of every clean index, in index order; class folders checked against the clean labels."""
    n, k = len(train), train.num_classes
    flat = (src / "data").is_dir()
    folders = [src / "data"] if flat else sorted(d for d in src.iterdir() if d.is_dir())
    if not folders:
        raise DataError(f"{src}: expected APBench's per-index PNG layout, {src}/data/<index>.png or {src}/<label>/<index>.png")
    files: dict[int, tuple[str, Path]] = {}
    labels = np.full(n, -1, np.int64)
    for d in folders:
        if not flat and not (re.fullmatch("[0-9]+", d.name) and int(d.name) < k):
            raise DataError(f"{d}: a class folder must be named by a label index in [0, {k})")
        for f in sorted(d.iterdir()):
            name = f"{d.name}/{f.name}"
            if not (m := _INDEX_PNG.fullmatch(f.name)) or not f.is_file():
                raise DataError(f"{src}/{name}: not an <index>.png file (APBench and the UD code read every file here as one)")
            i = int(m.group(1))
            if i >= n:
                raise DataError(f"{src}/{name}: index {i} is out of range for the {n} images of the clean set")
            if i in files:
                raise DataError(f"{src}/{name}: a second file for index {i} (first: {files[i][0]})")
            files[i] = (name, f)
            labels[i] = -1 if flat else int(d.name)
    if len(files) < n:
        i = min(set(range(n)) - set(files))
        raise DataError(f"{src}: no image for index {i} (expected one <index>.png for each of the {n} images of the clean set)")
    if not flat and (bad := np.flatnonzero(labels != train.labels)).size:
        i = int(bad[0])
        raise DataError(f"{src}/{files[i][0]}: in the folder of label {labels[i]}, but image {i} of the clean set has label {train.labels[i]}")
    return [files[i] for i in range(n)]


def _read_pngs(src: Path, train: ImageDataset, workers: int | None, progress: bool) -> tuple[np.ndarray, dict | None]:
    """The poisoned images (N, H, W, C) uint8 of a PNG folder, and its pst_fast.json (or None)."""
    side = _read_sidecar(src, train)
    items = _png_files(src, train)
    images, _, truncated = decode_files(src, "train", items, workers, progress, "fail", disk_bytes(p for _, p in items))
    if truncated.any():
        raise DataError(f"{src}/{items[int(np.flatnonzero(truncated)[0])][0]}: a truncated image (an exported poison is lossless PNG)")
    (h, w), (eh, ew) = images.shape[1:3], train.shape[:2]
    if (h, w) != (eh, ew):
        raise DataError(f"{src}/{items[0][0]}: image size {w}x{h} differs from {ew}x{eh} of the clean set")
    if train.shape[2] == 1:
        if (bad := np.flatnonzero((images != images[..., :1]).any(axis=(1, 2, 3)))).size:
            raise DataError(f"{src}/{items[int(bad[0])][0]}: a colour image, but the clean set is grayscale")
        images = np.ascontiguousarray(images[..., :1])
    if side is not None and sha256_array(images) != side["sha256"]["images"]:
        raise DataError(f"{src}: the images differ from those exported (sha256 in {SIDECAR}); remove {SIDECAR} to import them as another poison")
    return images, side


# ---------------------------------------------------------------- perturbation files

def _load_perturbation(src: Path, trust_pickle: bool) -> np.ndarray:
    """The array in a torch file (weights_only) or, with ``trust_pickle``, a pickle."""
    import torch

    with open(src, "rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"  # torch.save writes a zip archive
    if is_zip:
        try:
            with zipfile.ZipFile(src) as z:
                check_expansion(sum(i.file_size for i in z.infolist()), src.stat().st_size, "its records", str(src))
        except zipfile.BadZipFile as e:
            raise DataError(f"{src}: not a torch file of plain tensors (BadZipFile: {brief(e)})") from None
        try:
            obj = torch.load(src, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for corrupt or non-tensor content
            raise DataError(f"{src}: not a torch file of plain tensors ({type(e).__name__}: {brief(e)})") from None
    elif not trust_pickle:
        raise DataError(f"{src}: not a torch file, so a Python pickle (REM's -def-noise.pkl), which can run arbitrary code "
                        "while it loads; pass --trust-pickle if you trust where it came from")
    else:
        print(f"warning: unpickling {src} (--trust-pickle): a pickle can run arbitrary code, use only files you trust", file=sys.stderr)
        try:
            with open(src, "rb") as f:
                obj = pickle.load(f)
        except Exception as e:  # corrupt pickles raise many types
            raise DataError(f"{src}: not a readable pickle ({type(e).__name__}: {brief(e)})") from None
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().numpy()
    if not isinstance(obj, np.ndarray):
        raise DataError(f"{src}: expected one tensor or array (N|K, C, H, W), got {type(obj).__name__}")
    return obj


def _check_perturbation(src: Path, pert: np.ndarray, train: ImageDataset) -> None:
    n, k, (h, w, c) = len(train), train.num_classes, train.shape
    if pert.ndim != 4 or pert.shape[1:] != (c, h, w) or pert.shape[0] not in (n, k):
        raise DataError(f"{src}: expected shape (N={n} or K={k}, {c}, {h}, {w}) to match the clean set, got {pert.shape}")
    if pert.dtype.kind != "f" and pert.dtype != np.int8:
        raise DataError(f"{src}: expected float values (EM: δ in [0, 1] pixel units) or int8 (REM: pixel units), got {pert.dtype}")
    lo, hi = float(pert.min()), float(pert.max())  # NaN and inf propagate
    if pert.dtype.kind == "f" and not -1 <= lo <= hi <= 1:
        raise DataError(f"{src}: float δ must lie within [-1, 1] ([0, 1] pixel units, e.g. ±8/255); found [{lo:.4g}, {hi:.4g}]")


def _apply(clean: np.ndarray, labels: np.ndarray, pert: np.ndarray) -> np.ndarray:
    """Poisoned uint8 (N, H, W, C): clean + pert (N|K, C, H, W; float in [0, 1] units, or int8 pixels), ``CHUNK`` rows at a time."""
    rows = np.arange(len(clean)) if len(pert) == len(clean) else labels
    out = np.empty(clean.shape, np.uint8)
    for lo in range(0, len(clean), CHUNK):
        x, d = np.asarray(clean[lo:lo + CHUNK]), pert[rows[lo:lo + CHUNK]].transpose(0, 2, 3, 1)
        if pert.dtype == np.int8:
            out[lo:lo + CHUNK] = np.clip(x.astype(np.int16) + d, 0, 255)
        else:
            out[lo:lo + CHUNK] = quantize(x, d.astype(np.float32))
    return out


# ---------------------------------------------------------------- entry point

def import_poison(src, clean, out, *, attack: str | None = None, trust_pickle: bool = False, workers: int | None = None,
                  progress: bool = True) -> ImageDataset:
    """Import a poison of ``clean`` (a registered name or a directory) from ``src`` into ``out``; returns ``out/train``.

    ``src``: a PNG folder (flat or class layout) or a perturbation file (EM torch file, REM pickle with
    ``trust_pickle``). ``attack``: the name recorded in meta.json (default: the exported poison's, else 'external').
    ``workers`` threads decode PNGs.
    """
    src, out = Path(src).expanduser(), Path(out).expanduser()
    check_source_and_out(src, out)
    train, test = load(clean, "train"), load(clean, "test")
    x = np.asarray(train.images)
    side = None
    if src.is_dir():
        poisoned, side = _read_pngs(src, train, workers, progress)
        kind = "apbench-png"
    else:
        pert = _load_perturbation(src, trust_pickle)
        _check_perturbation(src, pert, train)
        poisoned = _apply(x, np.asarray(train.labels), pert)
        kind = f"{'class' if len(pert) != len(train) else 'sample'}-wise {pert.dtype} perturbation"
    delta = effective_delta(x, poisoned)
    levels = linf_levels_of(x, poisoned)
    if side is not None:
        meta = side["meta"] | {"attack": attack or side["meta"].get("attack", "external")}
        delta = delta if "delta" in side["sha256"] else None
        claims = [k for k in CLAIMS if k in meta]
        if meta.get("norm") == "linf" and isinstance(meta.get("budget"), (int, float)):  # the one claim the data can check
            if levels > budget_levels(meta["budget"]):
                raise DataError(f"{src}/{SIDECAR}: claims an linf budget of {meta['budget']:.4g} ({255 * meta['budget']:.3g}/255), but "
                                f"the images differ from the clean set by up to {levels}/255; remove {SIDECAR} to import them as "
                                "an external poison with their measured budget")
            claims = [k for k in claims if k not in ("norm", "budget")]
        meta["unverified"] = claims
    else:
        meta = {"name": f"{train.meta['name']}-{attack or 'external'}", "attack": attack or "external", "norm": "linf",
                "budget": levels / 255, "unverified": ["attack"] if attack else []}
    meta |= {"source": str(src.resolve()), "source_kind": kind, "measured_linf": levels / 255}
    write_poison(out, train, test, poisoned, delta, meta)
    return read_dataset(out / "train", verify=False)
