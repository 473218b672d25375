"""Looking at datasets: a PNG grid of images, a clean | poisoned | amplified-δ grid, and a text summary."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import atomic_write
from ..text import printable
from .format import ImageDataset, read_dataset

GAP = 2  # white pixels between tiles (after upscaling)


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size)


def _fit(draw, text: str, font, width: int) -> str:
    """``text``, shortened and ended with '..' if needed, so that it renders within ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "..", font=font) > width:
        text = text[:-1]
    return text + ".."


def _render(tiles: np.ndarray, ncol: int, scale: int, captions: list[str] | None = None, header: list[str] | None = None):
    """(N,H,W,C) uint8 tiles upscaled ``scale``x (nearest), ``ncol`` per row on white, as a PIL RGB image.

    ``captions``: one text under each tile; ``header``: one title above each column.
    """
    from PIL import Image, ImageDraw

    n, h, w, c = tiles.shape
    if c == 1:
        tiles = np.repeat(tiles, 3, axis=3)
    tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    h, w = h * scale, w * scale
    font = _font(max(10, min(14, w // 8)))
    text_h = font.getbbox("Ag")[3] + 3
    cap_h, top = (text_h if captions else 0), (text_h if header else 0)
    rows = math.ceil(n / ncol)
    cell_h, cell_w = h + cap_h + GAP, w + GAP
    canvas = np.full((top + rows * cell_h - GAP, ncol * cell_w - GAP, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, q = divmod(i, ncol)
        canvas[top + r * cell_h : top + r * cell_h + h, q * cell_w : q * cell_w + w] = tile
    im = Image.fromarray(canvas)
    draw = ImageDraw.Draw(im)
    for q, title in enumerate(header or []):
        draw.text((q * cell_w + 2, 1), _fit(draw, title, font, w - 4), fill=(0, 0, 0), font=font)
    for i, text in enumerate(captions or []):
        r, q = divmod(i, ncol)
        draw.text((q * cell_w + 2, top + r * cell_h + h + 1), _fit(draw, text, font, w - 4), fill=(0, 0, 0), font=font)
    return im


def _save(im, path) -> Path:
    return atomic_write(path, lambda tmp: im.save(tmp, format="PNG"))


def _check_images(x, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4 or x.dtype != np.uint8 or len(x) == 0 or x.shape[-1] not in (1, 3):
        raise DataError(f"{what}: expected a non-empty uint8 (N, H, W, C) array with C in (1, 3), got {x.dtype} {x.shape}")
    return x


def save_grid(images, path, nrow: int | None = None, labels=None, class_names=None, scale: int = 4) -> Path:
    """Write ``images`` (N,H,W,C) uint8 as a PNG grid, ``nrow`` images per row (default ~sqrt(N)), ``scale``x nearest.

    With ``labels`` (N,), each image is captioned with ``class_names[label]`` (or the label number).
    Written atomically; returns ``path``.
    """
    images = _check_images(images, "save_grid")
    captions = None
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != len(images):
            raise DataError(f"save_grid: {len(labels)} labels for {len(images)} images")
        if class_names is not None and not all(0 <= int(y) < len(class_names) for y in labels):
            raise DataError(f"save_grid: labels must lie in [0, {len(class_names)}) to index class_names")
        captions = [str(class_names[int(y)]) if class_names is not None else str(int(y)) for y in labels]
    ncol = nrow or math.ceil(math.sqrt(len(images)))
    return _save(_render(images, ncol, scale, captions=captions), path)


def amplify_delta(clean: np.ndarray, poisoned: np.ndarray, amplify: float = 15.0) -> np.ndarray:
    """δ = poisoned - clean (uint8 levels) shown as clip(127.5 + amplify·δ): 15 maps ±8/255 to 7.5..247.5."""
    d = poisoned.astype(np.float32) - clean.astype(np.float32)
    return np.clip(127.5 + amplify * d, 0, 255).round().astype(np.uint8)


def save_poison_grid(clean, poisoned, path, n: int = 8, amplify: float = 15.0, scale: int = 4) -> Path:
    """Write a PNG with one row per image for the first ``n``: clean | poisoned | amplified δ (see :func:`amplify_delta`)."""
    clean, poisoned = _check_images(clean, "save_poison_grid: clean")[:n], _check_images(poisoned, "save_poison_grid: poisoned")[:n]
    if clean.shape != poisoned.shape:
        raise DataError(f"save_poison_grid: clean {clean.shape} and poisoned {poisoned.shape} differ in shape")
    if not amplify > 0:
        raise DataError(f"save_poison_grid: amplify={amplify} must be positive")
    triples = np.stack([clean, poisoned, amplify_delta(clean, poisoned, amplify)], 1).reshape(-1, *clean.shape[1:])
    return _save(_render(triples, 3, scale, header=["clean", "poisoned", f"delta x{amplify:g}"]), path)


def save_preview(ds: ImageDataset, path, n: int = 16) -> Path:
    """``n`` images of ``ds`` spread over the split (so over every class): a poison with per-sample δ as
    clean | poisoned | amplified δ rows (:func:`save_poison_grid`), anything else as a captioned grid."""
    rows = np.linspace(0, len(ds) - 1, min(n, len(ds))).round().astype(np.int64)
    if ds.delta is not None and ds.delta.shape[0] == len(ds):
        poisoned = np.asarray(ds.images[rows])
        clean = (poisoned.astype(np.int16) - ds.delta[rows]).astype(np.uint8)
        return save_poison_grid(clean, poisoned, path, len(rows))
    return save_grid(np.asarray(ds.images[rows]), path, labels=ds.labels[rows], class_names=ds.classes)


def _floats(v) -> str:
    return " ".join(f"{a:.4f}" for a in v)


def info_text(ds: ImageDataset) -> str:
    """Name, split, shape, classes with counts, poison description, checksum status and mean/std of one split."""
    m = ds.meta
    counts = np.bincount(np.asarray(ds.labels), minlength=ds.num_classes)
    if ds.path is None:
        checksum = "not checked (dataset not on disk)"
    else:
        try:
            read_dataset(ds.path, verify=True)
            checksum = "ok (sha256 verified)"
        except DataError as e:
            checksum = f"FAILED: {e}"
    if ds.is_poisoned:
        budget = m.get("budget")
        if isinstance(budget, (int, float)) and m.get("norm") == "linf" and budget <= 1:
            budget = f"{budget:.4g} = {budget * 255:.3g}/255"
        delta = "absent" if ds.delta is None else ("per sample" if len(ds.delta) == len(ds) else "per class")
        poison = f"{m['attack']} ({m.get('norm', '?')} budget {budget}), seed {m.get('seed', '?')}, delta.npy {delta}"
        if m.get("unverified"):
            poison += f"; claimed by the imported files, not verified: {', '.join(m['unverified'])}"
    else:
        poison = "no (clean)"
    lines = [
        f"{m['name']} [{m['split']}]  {len(ds)} images of {'x'.join(map(str, ds.shape))} uint8  ({ds.path})",
        f"  classes ({ds.num_classes}): " + ", ".join(f"{c}={k}" for c, k in zip(ds.classes, counts)),
        f"  poisoned: {poison}",
        f"  checksums: {checksum}",
        f"  mean: {_floats(m.get('mean', []))}  std: {_floats(m.get('std', []))}",
    ]
    if m.get("source"):
        lines.append(f"  source: {m['source']}" + (f" ({m['source_kind']})" if "source_kind" in m else ""))
    if m.get("skipped"):
        lines.append(f"  skipped unreadable images at import: {len(m['skipped'])}")
    if m.get("truncated"):
        lines.append(f"  truncated JPEGs imported with libjpeg's grey fill: {len(m['truncated'])} (meta.json 'truncated')")
    return "\n".join(printable(line) for line in lines)  # names from files may hold control characters
