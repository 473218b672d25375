"""Importers (ImageFolder dirs and tars, CIFAR python batches, npz), the restricted unpickler and the image grid.

Every bad input is a real file: broken JPEGs, hostile tar members, malicious pickles.
"""
import io
import os
import pickle
import subprocess
import tarfile

import numpy as np
import pytest
from PIL import Image

from pst_fast import data
from pst_fast.data.format import read_dataset, write_dataset
from pst_fast.data.grid import info_text, save_grid, save_poison_grid
from pst_fast.data.importers import decode_image, import_source, jpeg_header
from pst_fast.data.safe_pickle import safe_load


def make_tar(tree, path, arcname="wrapped"):
    with tarfile.open(path, "w:gz" if str(path).endswith("gz") else "w") as tar:
        tar.add(tree, arcname=arcname)
    return path


def add_member(tar, name, data=b"", type_=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = type_, len(data), linkname
    tar.addfile(info, io.BytesIO(data) if type_ == tarfile.REGTYPE else None)


def jpeg_bytes(a, **save):
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", **save)
    return buf.getvalue()


# ---------------------------------------------------------------- ImageFolder


def test_imagefolder_dir_and_wrapped_tar(tmp_path, image_tree):
    tree = image_tree(classes=("9", "10", "2"), per_class=2)
    a = import_source(tree, tmp_path / "a", progress=False)
    b = import_source(make_tar(tree, tmp_path / "t.tar.gz"), tmp_path / "b", progress=True)
    for out in (a, b):
        assert set(out) == {"train", "test"}
        assert out["train"].classes == ["10", "2", "9"], "classes sorted as strings and recorded"
        assert out["train"].labels.tolist() == [0, 0, 1, 1, 2, 2] and out["test"].labels.tolist() == [0, 0, 1, 1, 2, 2]
        assert out["test"].meta["mean"] == out["train"].meta["mean"], "test is normalized with train statistics"
        assert out["train"].meta["source_kind"] == "imagefolder" and out["train"].meta["skipped"] == []
        read_dataset(out["train"].path)  # checksums verify
    assert a["train"].meta["name"] == "tree" and b["train"].meta["name"] == "t"
    assert b["train"].meta["source"] == str(tmp_path / "t.tar.gz")
    for split in ("train", "test"):
        assert np.array_equal(a[split].images, b[split].images)
    for i, (cls, f) in enumerate([("10", "000"), ("10", "001"), ("2", "000"), ("2", "001"), ("9", "000")]):
        assert np.array_equal(a["train"].images[i], np.asarray(Image.open(tree / "train" / cls / f"{f}.png").convert("RGB")))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary directory left behind"


def test_single_split_folder_and_modes(tmp_path, image_tree):
    tree = image_tree(splits=None, fmt="jpg")
    Image.new("L", (8, 8), 77).save(tree / "cat" / "gray.png")
    Image.new("RGBA", (8, 8), (1, 2, 3, 4)).save(tree / "dog" / "rgba.png")
    (tree / "dog" / "notes.txt").write_text("not an image")
    (tree / ".hidden").mkdir()
    out = import_source(tree, tmp_path / "o", progress=False, name="mine")
    assert set(out) == {"train"} and len(out["train"]) == 8 and out["train"].meta["name"] == "mine"
    assert out["train"].images[3].tolist() == [[[77] * 3] * 8] * 8 and out["train"].images[7, 0, 0].tolist() == [1, 2, 3]


def test_jpeg_fast_path_matches_pil():
    rng = np.random.default_rng(0)
    cases = [(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), save) for h, w in ((32, 32), (17, 45))
             for save in ({}, {"quality": 50, "subsampling": 0}, {"progressive": True}, {"subsampling": 2, "optimize": True})]
    cases.append((rng.integers(0, 256, (9, 11), dtype=np.uint8), {}))  # grayscale: 1 component, PIL path
    for a, save in cases:
        b = jpeg_bytes(a, **save)
        assert jpeg_header(b) == (*a.shape[:2], 3 if a.ndim == 3 else 1)
        assert np.array_equal(decode_image(b), np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))), save
    assert jpeg_header(b"\x89PNG\r\n") is None and jpeg_header(b"\xff\xd8\xff") is None
    with pytest.raises(Exception):
        decode_image(jpeg_bytes(cases[0][0])[:300])  # truncated: both paths refuse it


def test_tar_hostile_members(tmp_path, fails):
    cases = {"trav": ("../evil.jpg", tarfile.REGTYPE, "escapes the archive"),
             "abs": ("/etc/evil.jpg", tarfile.REGTYPE, "escapes the archive"),
             "deep": ("train/cat/../../../evil.jpg", tarfile.REGTYPE, "escapes the archive"),
             "sym": ("train/cat/link.jpg", tarfile.SYMTYPE, "is a link or device"),
             "hard": ("train/cat/hard.jpg", tarfile.LNKTYPE, "is a link or device"),
             "dev": ("train/cat/dev.jpg", tarfile.CHRTYPE, "is a link or device")}
    for tag, (member, kind, why) in cases.items():
        path = tmp_path / f"{tag}.tar"
        with tarfile.open(path, "w") as tar:
            add_member(tar, "train/cat/ok.jpg", jpeg_bytes(np.zeros((8, 8, 3), np.uint8)))
            add_member(tar, member, b"abc", kind, linkname="/etc/passwd")
        msg = fails(why, import_source, path, tmp_path / f"out-{tag}", progress=False)
        assert str(path) in msg and repr(member) in msg
        assert not (tmp_path / f"out-{tag}").exists()
    assert not (tmp_path.parent / "evil.jpg").exists()


def test_empty_class_folder(tmp_path, image_tree, fails):
    tree = image_tree()
    (tree / "train" / "empty").mkdir()
    fails(f"no images in {tree}/train/empty$", import_source, tree, tmp_path / "o", progress=False)
    fails("no images in .*t.tar.gz/wrapped/train/empty$", import_source, make_tar(tree, tmp_path / "t.tar.gz"), tmp_path / "o")
    (tree / "train" / "empty").rmdir()
    for d in ("test/cat", "test/dog"):
        for f in (tree / d).iterdir():
            f.unlink()
    fails(f"no images in {tree}/test$", import_source, tree, tmp_path / "o", progress=False)


def test_class_sets_differ_and_bad_layout(tmp_path, image_tree, fails):
    tree = image_tree(classes=("cat", "dog", "emu"))
    for f in (tree / "test" / "emu").iterdir():
        f.unlink()
    (tree / "test" / "emu").rmdir()
    fails(r"the classes of test differ from train's \(missing: emu; extra: -\)", import_source, tree, tmp_path / "o", progress=False)
    flat = image_tree("flat", splits=None)
    (flat / "cat" / "deeper").mkdir()
    Image.new("RGB", (8, 8)).save(flat / "cat" / "deeper" / "x.png")
    fails("cat/deeper/x.png: not laid out as", import_source, flat, tmp_path / "o", progress=False)
    (tmp_path / "nothing").mkdir()
    fails("no images found", import_source, tmp_path / "nothing", tmp_path / "o", progress=False)


def test_mixed_sizes(tmp_path, image_tree, fails):
    tree = image_tree(splits=None)
    Image.new("RGB", (9, 8)).save(tree / "dog" / "999.png")
    fails(r"dog/999.png: image size 9x8 differs from 8x8 of cat/000.png", import_source, tree, tmp_path / "o", workers=2, progress=False)


def test_unreadable_images_fail_or_skip(tmp_path, image_tree, fails):
    tree = image_tree(splits=None, fmt="jpg")
    good = (tree / "dog" / "001.jpg").read_bytes()
    (tree / "dog" / "bad.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (tree / "dog" / "cut.jpg").write_bytes(good[: len(good) // 2])  # a real JPEG with its second half missing
    fails(r"dog/bad.jpg: unreadable image \(", import_source, tree, tmp_path / "o", progress=False)
    (tree / "dog" / "bad.jpg").unlink()
    fails(r"dog/cut.jpg: unreadable image \(", import_source, make_tar(tree, tmp_path / "t.tar"), tmp_path / "o", progress=False)
    out = import_source(tree, tmp_path / "o", progress=False, on_bad_image="skip")
    assert len(out["train"]) == 6 and out["train"].meta["skipped"] == ["dog/cut.jpg"]
    assert out["train"].labels.tolist() == [0, 0, 0, 1, 1, 1]
    fails("on_bad_image='ignore'", import_source, tree, tmp_path / "o2", on_bad_image="ignore")
    fails("workers=0: expected a positive number", import_source, tree, tmp_path / "o2", workers=0)


def test_output_exists_and_bad_sources(tmp_path, image_tree, fails):
    tree = image_tree()
    (tmp_path / "o").mkdir()
    fails(f"{tmp_path}/o: output directory exists", import_source, tree, tmp_path / "o", progress=False)
    fails("no such file or directory", import_source, tmp_path / "missing", tmp_path / "o2")
    (tmp_path / "x.bin").write_bytes(b"junk" * 200)
    fails("x.bin: unrecognized source", import_source, tmp_path / "x.bin", tmp_path / "o2")
    (tmp_path / "cut.tar.gz").write_bytes(make_tar(tree, tmp_path / "t.tar.gz").read_bytes()[:2000])
    fails("cut.tar.gz: not a readable tar archive", import_source, tmp_path / "cut.tar.gz", tmp_path / "o2", progress=False)
    assert not (tmp_path / "o2").exists()


# ---------------------------------------------------------------- CIFAR python batches and the restricted unpickler


def write_cifar(root, kind, bytes_keys=True):
    """A CIFAR download in the torchvision layout: dict pickles (protocol 2) of uint8 (N, 3072) rows and label lists."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    k, files, key, names, meta = {
        "cifar10": (10, [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], "labels", "label_names", "batches.meta"),
        "cifar100": (100, ["train", "test"], "fine_labels", "fine_label_names", "meta"),
    }[kind]
    enc = (lambda s: s.encode()) if bytes_keys else str
    for f in files:
        d = {enc("data"): rng.integers(0, 256, (20, 3072), dtype=np.uint8), enc(key): [int(v) for v in rng.integers(0, k, 20)],
             enc("batch_label"): enc(f"batch {f}"), enc("filenames"): [enc(f"{i}.png") for i in range(20)]}
        (root / f).write_bytes(pickle.dumps(d, protocol=2))
    (root / meta).write_bytes(pickle.dumps({enc(names): [enc(f"c{i}") for i in range(k)], enc("num_vis"): 3072}, protocol=2))
    return root


@pytest.mark.parametrize("kind,bytes_keys", [("cifar10", True), ("cifar100", False)])
def test_cifar_batches(tmp_path, kind, bytes_keys):
    src = write_cifar(tmp_path / ("cifar-10-batches-py" if kind == "cifar10" else "cifar-100-python"), kind, bytes_keys)
    out = import_source(src, tmp_path / "o", progress=False)
    first = pickle.loads((src / ("data_batch_1" if kind == "cifar10" else "train")).read_bytes())
    key = "labels" if kind == "cifar10" else "fine_labels"
    first = {(k.decode() if isinstance(k, bytes) else k): v for k, v in first.items()}
    k = 10 if kind == "cifar10" else 100
    assert out["train"].classes == [f"c{i}" for i in range(k)] and out["train"].meta["source_kind"] == kind
    assert out["train"].shape == (32, 32, 3) and len(out["train"]) == (100 if kind == "cifar10" else 20) and len(out["test"]) == 20
    assert np.array_equal(out["train"].images[:20], first["data"].reshape(20, 3, 32, 32).transpose(0, 2, 3, 1))
    assert out["train"].labels[:20].tolist() == first[key]


def test_cifar_tar_gz(tmp_path):
    src = write_cifar(tmp_path / "cifar-10-batches-py", "cifar10")
    (src / "readme.html").write_text("<html>")
    archive = make_tar(src, tmp_path / "cifar-10-python.tar.gz", arcname="cifar-10-batches-py")
    a, b = import_source(src, tmp_path / "a", progress=False), import_source(archive, tmp_path / "b", progress=False)
    assert b["train"].meta["name"] == "cifar-10-python" and b["train"].meta["source_kind"] == "cifar10"
    assert a["train"].fingerprint == b["train"].fingerprint and a["test"].fingerprint == b["test"].fingerprint


def test_cifar_bad_labels(tmp_path, fails):
    src = write_cifar(tmp_path / "c", "cifar10")
    d = pickle.loads((src / "test_batch").read_bytes())
    d[b"labels"][3] = 10
    (src / "test_batch").write_bytes(pickle.dumps(d, protocol=2))
    fails(r"test_batch: labels must lie in \[0, 10\)", import_source, src, tmp_path / "o", progress=False)
    del d[b"labels"]
    (src / "test_batch").write_bytes(pickle.dumps(d, protocol=2))
    fails("test_batch: expected a dict with field 'labels'", import_source, src, tmp_path / "o", progress=False)


class Shell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class Popen:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (subprocess.Popen, (["touch", str(self.marker)],))


def test_malicious_pickles_are_refused_without_running(tmp_path, fails):
    marker = tmp_path / "pwned"
    src = write_cifar(tmp_path / "batches", "cifar10")
    (src / "test_batch").write_bytes(pickle.dumps({b"data": Shell(marker)}, protocol=2))
    fails(r"batches/test_batch: pickle refers to posix.system, which is not allowed \(only builtin containers, bytes and numpy arrays\)",
          import_source, src, tmp_path / "o", progress=False)
    for payload in (pickle.dumps(Popen(marker)), pickle.dumps([1, {b"x": Shell(marker)}], protocol=5)):
        fails("pickle refers to (subprocess.Popen|posix.system), which is not allowed", safe_load, payload, "evil.pkl")
    fails("pickle refers to builtins.eval", safe_load, b"cbuiltins\neval\n(S'__import__(\"os\")'\ntR.")
    fails("pickle refers to __builtin__.getattr", safe_load, b"c__builtin__\ngetattr\n(c__builtin__\nlist\nS'x'\ntR.")
    fails("_codecs.encode with 'rot13'", safe_load, b"c_codecs\nencode\n(Vabc\nVrot13\ntR.")
    fails("not a readable pickle", safe_load, pickle.dumps({"a": 1})[:-3])
    assert not marker.exists(), "a refused pickle ran code"


def test_safe_load_reads_what_numpy_and_cifar_need(tmp_path):
    value = {b"data": np.arange(12, dtype=np.uint8).reshape(3, 4), b"names": [b"a", ""], b"x": (1.5, 2, True, None, b""),
             b"f": np.float32(2.5), b"s": {1, 2}, b"u": np.array(["ab", "c"])}
    for protocol in (2, 4, 5):
        back = safe_load(pickle.dumps(value, protocol=protocol))
        assert back.keys() == value.keys() and np.array_equal(back[b"data"], value[b"data"]) and back[b"x"] == value[b"x"]
        assert back[b"f"] == np.float32(2.5) and back[b"s"] == {1, 2} and back[b"u"].tolist() == ["ab", "c"]
    (tmp_path / "p").write_bytes(pickle.dumps({"k": [1]}, protocol=2))
    with open(tmp_path / "p", "rb") as f:
        assert safe_load(f, encoding="latin1") == {"k": [1]}


# ---------------------------------------------------------------- .npz


def test_npz_nchw_and_nhwc(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (6, 3, 5, 7), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(6) % 2, x_test=x.transpose(0, 2, 3, 1), y_test=(np.arange(6) % 2).astype(np.uint8))
    out = import_source(tmp_path / "a.npz", tmp_path / "o", progress=False)
    assert out["train"].shape == (5, 7, 3) and np.array_equal(out["train"].images, out["test"].images)
    assert np.array_equal(out["train"].images, x.transpose(0, 2, 3, 1))
    assert out["train"].classes == ["0", "1"] and out["train"].meta["source_kind"] == "npz" and out["train"].meta["name"] == "a"
    g = np.random.default_rng(1).integers(0, 256, (4, 1, 6, 6), dtype=np.uint8)
    np.savez(tmp_path / "g.npz", x=g, y=np.array([0, 2, 1, 2]), classes=np.array(["zero", "one", "two"]))
    out = import_source(tmp_path / "g.npz", tmp_path / "og", progress=False)
    assert set(out) == {"train"} and out["train"].shape == (6, 6, 1) and out["train"].classes == ["zero", "one", "two"]


def test_npz_errors(tmp_path, fails):
    x = np.zeros((4, 8, 8, 3), np.uint8)
    cases = {
        "range": (dict(x=x, y=np.array([0, 1, 2, 3]), classes=np.array(["a", "b"])), r"array 'y': labels must lie in \[0, 2\)"),
        "neg": (dict(x=x, y=np.array([0, -1, 0, 0])), r"labels must lie in \[0, 1\) for 1 classes, found \[-1, 0\]"),
        "len": (dict(x=x, y=np.zeros(3, np.int64)), "must hold 4 integer labels"),
        "float": (dict(x=x, y=np.zeros(4)), "must hold 4 integer labels .* got float64"),
        "dtype": (dict(x=x.astype(np.float32), y=np.zeros(4, np.int64)), "array 'x': expected uint8 images"),
        "noy": (dict(x=x), r"expected arrays 'x' and 'y' \(found x\)"),
        "notest": (dict(x=x, y=np.zeros(4, np.int64), x_test=x), "expected arrays 'x_test' and 'y_test'"),
    }
    for tag, (arrays, match) in cases.items():
        np.savez(tmp_path / f"{tag}.npz", **arrays)
        fails(match, import_source, tmp_path / f"{tag}.npz", tmp_path / f"o-{tag}", progress=False)
    np.savez(tmp_path / "obj.npz", x=x, y=np.array([object()] * 4))
    fails(r"obj.npz: array 'y' holds Python objects \(a pickle\)", import_source, tmp_path / "obj.npz", tmp_path / "o", progress=False)
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
    fails("bad.npz: not a readable .npz", import_source, tmp_path / "bad.npz", tmp_path / "o", progress=False)
    assert not list(tmp_path.glob("o-*")) and not (tmp_path / "o").exists()


def test_registered_default_and_resolution(tmp_path, fails):
    train = data.load("cifar10-mini", "train", verify=False)
    test = data.load("cifar10-mini", "test", verify=False)
    assert len(train) == 10000 and len(test) == 2000 and train.shape == (32, 32, 3)
    assert np.bincount(train.labels).tolist() == [1000] * 10 and np.bincount(test.labels).tolist() == [200] * 10
    assert train.classes[:3] == ["airplane", "automobile", "bird"]
    fails("no such dataset", data.load, tmp_path / "missing")


# ---------------------------------------------------------------- grids and info


def test_save_grid_and_poison_grid(tmp_path, fails):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, 8, 6, 3), dtype=np.uint8)
    save_grid(x, tmp_path / "g.png", nrow=2, scale=3)
    im = np.asarray(Image.open(tmp_path / "g.png"))
    assert im.shape == (3 * 24 + 2 * 2, 2 * 18 + 2, 3)  # 3 rows x 2 columns of 24x18 tiles with 2-px gaps
    assert np.array_equal(im[:24, :18], x[0].repeat(3, 0).repeat(3, 1)) and np.array_equal(im[26:50, 20:38], x[3].repeat(3, 0).repeat(3, 1))
    save_grid(x[..., :1], tmp_path / "c.png", labels=[0, 1, 2, 1, 0], class_names=["cat", "dog", "emu"])
    assert Image.open(tmp_path / "c.png").size[1] > 2 * 32 + 2, "a caption band under each row"
    fails("save_grid: 2 labels for 5 images", save_grid, x, tmp_path / "e.png", labels=[0, 1])
    fails("save_grid: expected a non-empty uint8", save_grid, x.astype(np.float32), tmp_path / "e.png")

    clean = rng.integers(20, 236, (4, 8, 8, 3), dtype=np.uint8)
    delta = rng.integers(-8, 9, clean.shape)
    save_poison_grid(clean, (clean + delta).astype(np.uint8), tmp_path / "p.png", n=3, scale=1)
    p = np.asarray(Image.open(tmp_path / "p.png"))
    header = p.shape[0] - (3 * 10 - 2)
    assert p.shape[1] == 3 * 10 - 2 and header > 0, "3 rows of clean | poisoned | delta below a header"
    assert np.array_equal(p[header : header + 8, 20:28], np.clip(127.5 + 15 * delta[0], 0, 255).round().astype(np.uint8))
    assert not list(tmp_path.glob(".*tmp")) and not (tmp_path / "e.png").exists()


def test_info_text(tmp_path, tiny_dataset):
    ds = read_dataset(tiny_dataset)
    text = info_text(ds)
    assert "tiny [train]  12 images of 8x8x3 uint8" in text and "a=4, b=4, c=4" in text
    assert "poisoned: no" in text and "checksums: ok" in text and "mean: 0." in text
    x = np.asarray(ds.images)
    meta = {"name": "p", "split": "train", "classes": ["a", "b", "c"], "source": "t", "attack": "lsp", "norm": "linf", "budget": 8 / 255, "seed": 3}
    p = write_dataset(tmp_path / "p", x, np.asarray(ds.labels), meta, delta=np.ones((3, 8, 8, 3), np.int8))
    raw = bytearray((tmp_path / "p" / "images.npy").read_bytes())
    raw[-1] ^= 1
    (tmp_path / "p" / "images.npy").write_bytes(bytes(raw))
    text = info_text(p)
    assert "poisoned: lsp (linf budget 0.03137 = 8/255), seed 3, delta.npy per class" in text
    assert "checksums: FAILED: " in text and "sha256 mismatch" in text
