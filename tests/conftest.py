import numpy as np
import pytest
from PIL import Image

from pst_fast.data.format import write_dataset
from pst_fast.errors import DataError


@pytest.fixture
def fails():
    """``fails(match, fn, *args, **kw)``: ``fn`` must raise a DataError matching ``match`` whose message is one line."""
    def check(match, fn, *args, **kwargs):
        with pytest.raises(DataError, match=match) as e:
            fn(*args, **kwargs)
        assert "\n" not in str(e.value), str(e.value)
        return str(e.value)

    return check


@pytest.fixture
def image_tree(tmp_path):
    """A factory writing an ImageFolder tree ``tmp_path/name/[split/]class/NNN.fmt`` of random RGB images; returns its root.

    ``splits=None`` writes ``name/class/...`` (a single-split folder).
    """
    def make(name="tree", classes=("cat", "dog"), per_class=3, splits=("train", "test"), size=(8, 8), fmt="png"):
        rng = np.random.default_rng(0)
        root = tmp_path / name
        for split in splits or ("",):
            for cls in classes:
                d = root / split / cls
                d.mkdir(parents=True, exist_ok=True)
                for i in range(per_class):
                    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(d / f"{i:03d}.{fmt}")
        return root

    return make


@pytest.fixture
def tiny_dataset(tmp_path):
    """A canonical split directory of 12 random 8x8 RGB images in 3 classes."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)
    y = np.arange(12, dtype=np.int64) % 3
    write_dataset(tmp_path / "ds", x, y, {"name": "tiny", "split": "train", "classes": ["a", "b", "c"], "source": "test"})
    return tmp_path / "ds"


def write_noise_dataset(root, n_train: int, n_test: int, patch: bool = False):
    """train/ and test/ splits of random 32x32 RGB images in 4 classes (labels cycle); with ``patch`` the training
    images carry their only class signal, a 4x4 corner patch of class colour (a class-wise patch poison)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        y = np.arange(n) % 4
        x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        if patch and split == "train":
            x[:, :4, :4, :] = (40 + 50 * y)[:, None, None, None]
        write_dataset(root / split, x, y.astype(np.int64), {"name": root.name, "split": split, "classes": list("abcd"), "source": "test"})
    return root


def run_in_triton_interpreter(script: str, tests_dir: str) -> None:
    """Run ``script`` (formatted with ``tests=tests_dir``) in a fresh process under TRITON_INTERPRET=1 with the
    Triton backend forced; it must print TRITON_OK."""
    import os
    import subprocess
    import sys

    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1", PST_FAST_BACKEND="triton")
    r = subprocess.run([sys.executable, "-c", script.format(tests=tests_dir)], capture_output=True, text=True, env=env, timeout=600)
    assert "TRITON_OK" in r.stdout, r.stderr[-3000:]


def write_mixed_jpeg_tree(root, classes=("a", "b", "c"), per_split=(("train", 12), ("test", 4)), seed=0):
    """An ImageFolder tree of JPEGs as ImageNet ships them: sides 95..1067 px, about one in five grayscale, some CMYK and
    progressive, mixed chroma subsampling. Class sizes rise with the class (the first class small, the last one large) so
    that a crop box planned for one image never fits another. Returns ``root``."""
    from pathlib import Path

    rng = np.random.default_rng(seed)
    root = Path(root)
    for split, n in per_split:
        for k, cls in enumerate(classes):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            lo = 95 + k * 900 // len(classes)
            for i in range(n):
                w, h = (int(v) for v in rng.integers(lo, lo + 900 // len(classes) + 72, 2))
                small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
                im = Image.fromarray(small).resize((min(w, 1067), min(h, 1067)), Image.BICUBIC)
                mode = ("RGB", "L", "CMYK", "RGB", "L")[i % 5]
                im.convert(mode).save(root / split / cls / f"{i:03d}.JPEG", "JPEG", quality=int(rng.integers(70, 96)),
                                      progressive=bool(i % 3 == 1), subsampling=int(i % 3))
    return root
