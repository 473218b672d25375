"""A poison for an ImageFolder tree, kept apart from the tree: ``DIR/delta.npy`` + ``DIR/meta.json``.

``delta.npy`` is int8 (K, S, S, 3) per class or (N, S, S, 3) per sample, at the training resolution S,
in the row order of :func:`~pst_fast.data.folder.scan` (classes sorted as strings, files in name order).
``meta.json`` records the attack and its parameters, S, the classes, the number of training images, the
file-list fingerprint of the tree and the sha256 of delta.npy. ``train --data TREE --poison DIR`` checks
it against the tree (:func:`load_folder_poison`) and the loaders add δ in the pipeline, so the tree
itself is never written to.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from ..errors import DataError
from .folder import FolderSplit
from .format import _load_npy, sha256_array

FORMAT = "pst-fast folder poison"


def write_folder_poison(out: str | os.PathLike, delta: np.ndarray, split: FolderSplit, image_size: int, meta: dict) -> Path:
    """Write ``delta`` (int8 (K|N, S, S, 3)) made for ``split`` at ``image_size`` px to the new directory ``out``, atomically.

    ``meta``: what the generator records (attack, params, seed, ...); the tree's identity is added here.
    """
    out = Path(out)
    s = image_size
    if delta.dtype != np.int8 or delta.shape[1:] != (s, s, 3) or delta.shape[0] not in (split.num_classes, len(split)):
        raise DataError(f"delta: expected int8 (K={split.num_classes} or N={len(split)}, {s}, {s}, 3), got {delta.dtype} {delta.shape}")
    if out.exists():
        raise DataError(f"--out {out}: output directory exists (choose another or remove it)")
    meta = {"format": FORMAT, **meta, "image_size": s, "per": "class" if delta.shape[0] == split.num_classes else "sample",
            "classes": split.classes, "train": len(split), "fingerprint": split.fingerprint, "sha256": sha256_array(delta)}
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.save(tmp / "delta.npy", np.ascontiguousarray(delta))
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    tmp.rename(out)
    return out


def load_folder_poison(directory: str | os.PathLike, split: FolderSplit, image_size: int) -> tuple[np.ndarray, dict]:
    """(δ memory-mapped, meta) of the poison ``directory``, checked against the training ``split`` read at ``image_size`` px.

    Class-wise δ needs the same classes; sample-wise δ also the same file list (count and fingerprint).
    """
    d = Path(directory).expanduser()
    if not (d / "delta.npy").is_file() or not (d / "meta.json").is_file():
        raise DataError(f"--poison {d}: expected a directory with delta.npy and meta.json (pst-fast poison --data TREE --out DIR writes one)")
    meta = json.loads((d / "meta.json").read_text())
    if meta.get("format") != FORMAT:
        raise DataError(f"--poison {d}: meta.json is not a {FORMAT!r} (a canonical poisoned dataset is passed as --data)")
    if meta["classes"] != split.classes:
        gone, new = sorted(set(meta["classes"]) - set(split.classes)), sorted(set(split.classes) - set(meta["classes"]))
        raise DataError(f"--poison {d}: made for other classes than {split.root} (missing: {', '.join(gone[:5]) or '-'}; "
                        f"extra: {', '.join(new[:5]) or '-'}{'; same names, other order' if not gone and not new else ''})")
    if meta["image_size"] != image_size:
        raise DataError(f"--poison {d}: made at {meta['image_size']} px, the run reads {image_size} px (--image-size {meta['image_size']})")
    if meta["per"] == "sample" and meta["train"] != len(split):
        raise DataError(f"--poison {d}: made for {meta['train']} training images, {split.root} has {len(split)}")
    if meta["per"] == "sample" and meta["fingerprint"] != split.fingerprint:
        raise DataError(f"--poison {d}: made for another file list than {split.root} (same count, other names or sizes)")
    delta = _load_npy(d / "delta.npy", "delta", mmap=True)
    want = split.num_classes if meta["per"] == "class" else len(split)
    if delta.dtype != np.int8 or delta.shape != (want, image_size, image_size, 3):
        raise DataError(f"--poison {d}/delta.npy: expected int8 {(want, image_size, image_size, 3)}, got {delta.dtype} {delta.shape}")
    return delta, meta
