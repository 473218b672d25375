"""The one dataset interface (pst_fast.data.Split): a canonical split and an ImageFolder tree of the same images read
the same pixels, loaders and normalization; and no module outside pst_fast/data tells the kinds apart."""
import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pst_fast import data
from pst_fast.data import Normalization
from pst_fast.data.format import write_dataset
from pst_fast.data.normalization import IMAGENET
from pst_fast.errors import DataError

S, BORDER = 28, 2  # a tree image is 32 px: its evaluation view (the centred 0.875 x 32 = 28 px) is the canonical image, unresized
CLASSES = ["ant", "bee", "cat"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(canonical train split, the same images as an ImageFolder tree's train split): 4 images per class, PNG (lossless)."""
    root = tmp_path_factory.mktemp("split")
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(len(CLASSES)), 4)
    framed = rng.integers(0, 256, (len(y), S + 2 * BORDER, S + 2 * BORDER, 3), dtype=np.uint8)
    images = np.ascontiguousarray(framed[:, BORDER:-BORDER, BORDER:-BORDER])
    for split in data.SPLITS:
        write_dataset(root / "canonical" / split, images, y.astype(np.int64), {"name": "c", "split": split, "classes": CLASSES, "source": "t"})
        for i, (x, k) in enumerate(zip(framed, y)):
            (root / "tree" / split / CLASSES[k]).mkdir(parents=True, exist_ok=True)
            Image.fromarray(x).save(root / "tree" / split / CLASSES[k] / f"{i:02d}.png")
    canonical, _ = data.open_splits(root / "canonical")
    tree, _ = data.open_splits(root / "tree")
    return canonical, tree


def test_both_kinds_answer_the_interface_alike(pair):
    canonical, tree = pair
    assert (canonical.in_place, tree.in_place) == (False, True)
    assert len(canonical) == len(tree) == 12 and canonical.classes == tree.classes == CLASSES and canonical.num_classes == tree.num_classes == 3
    np.testing.assert_array_equal(canonical.labels, tree.labels)
    assert not canonical.is_poisoned and not tree.is_poisoned and canonical.skipped == tree.skipped == []
    assert canonical.native_size() == S and tree.native_size() == S + 2 * BORDER
    assert len(canonical.fingerprint) == len(tree.fingerprint) == 64
    assert canonical.norm == Normalization(canonical.meta["mean"], canonical.meta["std"]) and tree.norm == IMAGENET
    idx = np.array([0, 5, 11])
    assert len(canonical.subset(idx)) == len(tree.subset(idx)) == 3


def test_same_images_read_the_same_pixels(pair, monkeypatch):
    canonical, tree = pair
    idx = np.array([1, 4, 7, 10])
    x = canonical.pixels(idx)
    assert x.shape == (4, 3, S, S) and x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1
    torch.testing.assert_close(x, torch.from_numpy(np.asarray(canonical.images)[idx]).permute(0, 3, 1, 2) / 255, rtol=0, atol=1e-7)
    torch.testing.assert_close(tree.pixels(idx, size=S), x, rtol=0, atol=0)  # PNG: exact
    torch.testing.assert_close(canonical.subset(idx).pixels(np.arange(4)), x, rtol=0, atol=0)
    rows = torch.from_numpy(idx)
    for budget in ("0", "1"):  # a tree decoded on every read, or once into the cache
        monkeypatch.setenv("PST_FAST_DECODE_CACHE_GB", budget)
        for split in (canonical, tree):
            r = split.rows("cpu", S)
            assert r.shape == (3, S, S)
            torch.testing.assert_close(r.clean(rows), x, rtol=0, atol=0)
    with pytest.raises(DataError, match="read at its own size"):
        canonical.pixels(idx, size=S + 4)


def test_a_poisoned_split_reads_its_poisoned_pixels(pair, monkeypatch):
    """A canonical poison holds the poisoned images; a tree adds its attached δ (with clamping): the same pixels."""
    canonical, tree = pair
    delta = np.random.default_rng(1).integers(-60, 61, (len(CLASSES), S, S, 3)).astype(np.int8)  # per class
    poisoned = np.clip(np.asarray(canonical.images, np.int16) + delta[canonical.labels], 0, 255).astype(np.uint8)
    canonical_p = dataclasses.replace(canonical, images=poisoned, meta={**canonical.meta, "attack": "test"})
    tree_p = dataclasses.replace(tree, delta=delta, delta_sha256="0" * 64)
    assert canonical_p.is_poisoned and tree_p.is_poisoned
    idx = np.arange(len(tree))
    x = canonical_p.pixels(idx)
    torch.testing.assert_close(tree_p.pixels(idx, size=S), x, rtol=0, atol=0)
    for budget in ("0", "1"):
        monkeypatch.setenv("PST_FAST_DECODE_CACHE_GB", budget)
        torch.testing.assert_close(tree_p.rows("cpu", S).clean(torch.from_numpy(idx)), x, rtol=0, atol=0)


def test_one_loader_factory_for_both_kinds(pair):
    canonical, tree = pair
    reading = data.Reading(loader="fallback", image_size=S)
    kw = dict(shuffle=False, augment=False, norm=IMAGENET, reading=reading)
    a, b = (list(data.batch_loader(s, 5, **kw)) for s in (canonical, tree))
    assert [len(x.y) for x in a] == [len(x.y) for x in b] == [5, 5, 2]
    for u, v in zip(a, b):
        torch.testing.assert_close(u.x, v.x, rtol=0, atol=1e-6)
        assert torch.equal(u.y, v.y) and torch.equal(u.idx, v.idx)
    x = canonical.pixels(np.arange(5))
    torch.testing.assert_close(a[0].x, IMAGENET.from01(x), rtol=1e-6, atol=1e-6)  # the loader's fused normalization
    assert data.batch_loader(canonical, 5).norm == canonical.norm and data.batch_loader(tree, 5, reading=reading).norm == IMAGENET


def test_normalization_is_one_convention():
    norm = Normalization([0.4, 0.5, 0.6], [0.2, 0.25, 0.3])
    assert norm.mean == (0.4, 0.5, 0.6) and hash(norm) == hash(Normalization((0.4, 0.5, 0.6), (0.2, 0.25, 0.3)))
    x01 = torch.rand(2, 3, 5, 5)
    z = norm.from01(x01)
    m, s = norm.tensors("cpu")
    assert m.shape == (1, 3, 1, 1) and m.dtype == torch.float32 and torch.equal(z, (x01 - m) / s)
    torch.testing.assert_close(norm.to01(z), x01)
    assert norm.from01(x01, torch.channels_last).is_contiguous(memory_format=torch.channels_last)
    v = torch.arange(256.0).view(1, 1, 1, -1).expand(1, 3, 1, 256)
    scale, bias = norm.scale_bias()
    torch.testing.assert_close(v * scale.view(1, 3, 1, 1) + bias.view(1, 3, 1, 1), norm.from01(v / 255), rtol=1e-6, atol=1e-6)
    assert torch.equal(Normalization.identity(3).from01(x01), x01)


def test_no_module_outside_the_data_package_branches_on_the_kind():
    pkg = Path(__file__).resolve().parents[1] / "pst_fast"
    kind = re.compile(r'isinstance\(.*FolderSplit|hasattr\(.*"images"|is_image_folder\(')
    found = [f"{p.relative_to(pkg.parent)}:{i}" for p in sorted(pkg.rglob("*.py")) if "data" not in p.relative_to(pkg).parts[:1]
             for i, line in enumerate(p.read_text().splitlines(), 1) if kind.search(line)]
    assert not found, found
