"""Interop: APBench/UD per-index PNG folders (export -> import bit for bit), EM .pt and REM .pkl perturbations."""
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import write_noise_dataset
from PIL import Image

from pst_fast import data
from pst_fast.attacks import poison
from pst_fast.data.format import effective_delta, quantize, write_dataset, write_poison
from pst_fast.data.interop import export_png, import_poison

N, K = 24, 4


@pytest.fixture
def clean(tmp_path):
    return write_noise_dataset(tmp_path / "clean", N, 8)


def arrays(ds):
    return np.asarray(ds.images), np.asarray(ds.labels), None if ds.delta is None else np.asarray(ds.delta)


def assert_same_poison(a, b):
    for x, y in zip(arrays(a), arrays(b)):
        assert (x is None and y is None) or np.array_equal(x, y)
    arrays_sha = lambda ds: {k: v for k, v in ds.meta["sha256"].items() if k != "meta"}  # noqa: E731 (meta.json differs: source)
    assert arrays_sha(a) == arrays_sha(b) and a.fingerprint == b.fingerprint


@pytest.fixture
def noise_poison(clean, tmp_path):
    """A synthetic poison of ``clean``: ±8 uniform noise per sample, written as attacks write theirs."""
    train, test = data.load(clean, "train"), data.load(clean, "test")
    x = np.asarray(train.images)
    images = np.clip(x.astype(np.int16) + np.random.default_rng(3).integers(-8, 9, x.shape), 0, 255).astype(np.uint8)
    write_poison(tmp_path / "noise", train, test, images, effective_delta(x, images), {"name": "noise", "source": "test", "attack": "noise"})
    return tmp_path / "noise"


# ---------------------------------------------------------------- PNG folders


@pytest.mark.parametrize("layout", ["flat", "class"])
def test_png_round_trip_is_bit_exact(clean, noise_poison, tmp_path, layout):
    lsp = tmp_path / "lsp"
    poison("lsp", str(clean), str(lsp), progress=False)
    for src in (noise_poison, lsp):
        out = export_png(src, tmp_path / f"png-{src.name}", layout=layout, progress=False)
        ds = data.load(src, "train")
        rel = [f"data/{i}.png" if layout == "flat" else f"{ds.labels[i]}/{i}.png" for i in range(N)]
        assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == sorted(rel)
        assert np.array_equal(np.asarray(Image.open(out / rel[5])), ds.images[5]), "lossless PNG of image 5"
        back = import_poison(out, clean, tmp_path / f"back-{src.name}", progress=False)
        assert_same_poison(back, ds)
        assert back.meta["attack"] == ds.meta["attack"] and back.meta["source_kind"] == "apbench-png"
        assert back.meta["clean_fingerprint"] == data.load(clean, "train").fingerprint
        assert data.load(back.path.parent, "test").fingerprint == data.load(clean, "test").fingerprint
        data.load(back.path.parent, "train", verify=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary directory left behind"


def test_cli_round_trip_without_delta(clean, tmp_path):
    """OPS publishes no delta.npy; the round trip keeps it that way. Through the command line."""
    def cli(*args):
        r = subprocess.run([sys.executable, "-m", "pst_fast", *map(str, args)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        return r.stdout

    poison("ops", str(clean), str(tmp_path / "ops"), progress=False)
    assert "data/<index>.png" in cli("data", "export", tmp_path / "ops", "--format", "png", "--out", tmp_path / "png")
    assert "delta.npy absent" in cli("data", "import-poison", tmp_path / "png", "--clean", clean, "--out", tmp_path / "back")
    assert_same_poison(data.load(tmp_path / "back"), data.load(tmp_path / "ops"))


def test_apbench_folder_without_sidecar(clean, noise_poison, tmp_path):
    """A folder as APBench writes it (no pst_fast.json): read the way its Dataset_load does, imported with the clean labels."""
    out = export_png(noise_poison, tmp_path / "png", progress=False)
    (out / "pst_fast.json").unlink()
    train, ds = data.load(clean, "train"), data.load(noise_poison, "train")
    samples = sorted(os.listdir(out / "data"), key=lambda s: int(s[:-4]))  # util_sharp.py's Dataset_load
    assert [int(s.split(".")[0]) for s in samples] == list(range(N))
    assert all(np.array_equal(np.asarray(Image.open(out / "data" / s)), ds.images[int(s[:-4])]) for s in samples)
    back = import_poison(out, clean, tmp_path / "back", progress=False)
    assert_same_poison(back, ds)
    assert back.meta["attack"] == "external" and back.meta["budget"] == 8 / 255 and back.meta["name"] == "clean-external"
    back = import_poison(out, clean, tmp_path / "named", attack="em-apbench", progress=False)
    assert back.meta["attack"] == "em-apbench" and back.labels.tolist() == train.labels.tolist()


def variant(clean, root, images=None, labels=None):
    """A copy of ``clean`` with other training images or labels."""
    train = data.load(clean, "train")
    shutil.copytree(clean / "test", root / "test")
    write_dataset(root / "train", np.asarray(train.images) if images is None else images,
                  np.asarray(train.labels) if labels is None else labels, dict(train.meta))
    return root


def test_png_folder_errors(clean, noise_poison, tmp_path, fails):
    train = data.load(clean, "train")
    other = variant(clean, tmp_path / "relabelled", labels=(np.asarray(train.labels) + 1) % K)
    x = np.asarray(train.images).copy()
    x[0, 0, 0, 0] ^= 1
    shifted = variant(clean, tmp_path / "shifted", images=x)
    flat = export_png(noise_poison, tmp_path / "flat", progress=False)
    fails(r"flat/pst_fast.json: image 0 has label 0 here and 1 in the clean set", import_poison, flat, other, tmp_path / "o")
    fails("clean_fingerprint differs", import_poison, flat, shifted, tmp_path / "o")

    cls = export_png(noise_poison, tmp_path / "cls", layout="class", progress=False)
    (cls / "pst_fast.json").unlink()
    label = int(train.labels[5])
    os.rename(cls / str(label) / "5.png", cls / str((label + 1) % K) / "5.png")
    fails(rf"cls/{(label + 1) % K}/5.png: in the folder of label {(label + 1) % K}, but image 5 of the clean set has label {label}",
          import_poison, cls, clean, tmp_path / "o")
    os.rename(cls / str((label + 1) % K) / "5.png", cls / "0" / "005.png")
    fails("cls/0/005.png: in the folder of label 0", import_poison, cls, clean, tmp_path / "o")

    (flat / "pst_fast.json").unlink()
    cases = [
        (lambda: (flat / "data" / "3.png").unlink(), "no image for index 3 "),
        (lambda: shutil.copy(flat / "data" / "0.png", flat / "data" / "3.png"), None),
        (lambda: shutil.copy(flat / "data" / "0.png", flat / "data" / "24.png"), "data/24.png: index 24 is out of range for the 24 images"),
        (lambda: (flat / "data" / "24.png").rename(flat / "data" / "007.png"), "data/7.png: a second file for index 7 .first: data/007.png"),
        (lambda: (flat / "data" / "007.png").rename(flat / "data" / "notes.txt"), "data/notes.txt: not an <index>.png file"),
        (lambda: (flat / "data" / "notes.txt").unlink() or Image.new("RGB", (16, 16)).save(flat / "data" / "3.png"),
         "data/3.png: image size 16x16 differs from 32x32"),
    ]
    for change, match in cases:
        change()
        if match:
            fails(match, import_poison, flat, clean, tmp_path / "o", progress=False)
    fails("expected APBench's per-index PNG layout", import_poison, tmp_path / "clean" / "train", clean, tmp_path / "o")
    fails("no such file or directory", import_poison, tmp_path / "missing", clean, tmp_path / "o")

    edited = export_png(noise_poison, tmp_path / "edited", progress=False)
    im = np.asarray(Image.open(edited / "data" / "2.png")).copy()
    im[0, 0, 0] ^= 1
    Image.fromarray(im).save(edited / "data" / "2.png")
    fails("the images differ from those exported .sha256 in pst_fast.json.", import_poison, edited, clean, tmp_path / "o")
    (edited / "pst_fast.json").write_text(json.dumps({"labels": [0] * N}))
    fails("edited/pst_fast.json: not a pst_fast.json written by 'pst-fast data export'", import_poison, edited, clean, tmp_path / "o")
    fails("edited: output directory exists", export_png, noise_poison, edited, progress=False)
    fails("layout='tree': expected one of flat, class", export_png, noise_poison, tmp_path / "t", layout="tree")
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- EM and REM perturbation files


@pytest.mark.parametrize("per", [N, K])
def test_em_perturbation_pt(clean, tmp_path, per):
    """EM's perturbation.pt: a float tensor (N|K, C, H, W) in [-ε, ε]; the import equals applying it."""
    eps = 8 / 255
    pert = (torch.rand(per, 3, 32, 32, generator=torch.Generator().manual_seed(per)) * 2 - 1) * eps
    torch.save(pert, tmp_path / "perturbation.pt")
    back = import_poison(tmp_path / "perturbation.pt", clean, tmp_path / "em")
    train = data.load(clean, "train")
    x, y = np.asarray(train.images), np.asarray(train.labels)
    d = pert.permute(0, 2, 3, 1).numpy()
    want = quantize(x, d if per == N else d[y])
    assert np.array_equal(back.images, want) and np.array_equal(back.delta, effective_delta(x, want))
    assert back.meta["source_kind"] == f"{'sample' if per == N else 'class'}-wise float32 perturbation"
    assert back.meta["attack"] == "external" and back.meta["norm"] == "linf" and back.meta["budget"] <= 8 / 255
    data.load(back.path.parent, "train", verify=True)


def test_rem_pickle_needs_trust(clean, tmp_path, fails, capsys):
    """REM's -def-noise.pkl: pickle.dump of an int8 array (N, C, H, W) in pixels; unpickled only with trust_pickle."""
    noise = np.random.default_rng(0).integers(-8, 9, (N, 3, 32, 32)).astype(np.int8)
    src = tmp_path / "rem-fin-def-noise.pkl"
    src.write_bytes(pickle.dumps(noise))
    fails(r"rem-fin-def-noise.pkl: not a torch file, so a Python pickle .* pass --trust-pickle", import_poison, src, clean, tmp_path / "o")
    assert capsys.readouterr().err == ""
    back = import_poison(src, clean, tmp_path / "rem", trust_pickle=True, attack="rem")
    assert "warning: unpickling" in capsys.readouterr().err
    x = np.asarray(data.load(clean, "train").images)
    want = np.clip(x.astype(np.int16) + noise.transpose(0, 2, 3, 1), 0, 255).astype(np.uint8)  # REM's utils/generic.py
    assert np.array_equal(back.images, want) and back.meta["attack"] == "rem" and back.meta["name"] == "clean-rem"
    torch.save(torch.from_numpy(noise), tmp_path / "noise.pt")  # int8 in a torch file: pixels too, no trust needed
    assert np.array_equal(import_poison(tmp_path / "noise.pt", clean, tmp_path / "rem-pt").images, want)

    marker = tmp_path / "pwned"

    class Shell:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Shell()))
    fails("pass --trust-pickle", import_poison, tmp_path / "evil.pkl", clean, tmp_path / "o")
    torch.save({"x": Shell()}, tmp_path / "evil.pt")
    fails("evil.pt: not a torch file of plain tensors", import_poison, tmp_path / "evil.pt", clean, tmp_path / "o")
    assert not marker.exists(), "a refused file ran code"


def test_perturbation_errors(clean, tmp_path, fails):
    cases = {
        "rows": (torch.zeros(N + 1, 3, 32, 32), r"expected shape \(N=24 or K=4, 3, 32, 32\) to match the clean set, got \(25, 3, 32, 32\)"),
        "nhwc": (torch.zeros(N, 32, 32, 3), r"expected shape .* got \(24, 32, 32, 3\)"),
        "sets": (torch.zeros(2, N, 3, 32, 32), r"expected shape .* got \(2, 24, 3, 32, 32\)"),
        "int16": (torch.zeros(N, 3, 32, 32, dtype=torch.int16), "expected float values .* or int8 .*, got int16"),
        "x255": (torch.full((K, 3, 32, 32), 8.0), r"float δ must lie within \[-1, 1\] .*; found \[8, 8\]"),
        "nan": (torch.full((K, 3, 32, 32), float("nan")), r"float δ must lie within .*; found \[nan, nan\]"),
        "dict": ({"perturbation": torch.zeros(N, 3, 32, 32)}, "expected one tensor or array .*, got dict"),
    }
    for name, (obj, match) in cases.items():
        torch.save(obj, tmp_path / f"{name}.pt")
        fails(f"{name}.pt: {match}", import_poison, tmp_path / f"{name}.pt", clean, tmp_path / "o")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "rows.pt").read_bytes()[:300])
    fails("cut.pt: not a torch file of plain tensors", import_poison, tmp_path / "cut.pt", clean, tmp_path / "o")
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2]))
    fails("list.pkl: expected one tensor or array .*, got list", import_poison, tmp_path / "list.pkl", clean, tmp_path / "o", trust_pickle=True)
    (tmp_path / "junk.pkl").write_bytes(b"junk")
    fails("junk.pkl: not a readable pickle", import_poison, tmp_path / "junk.pkl", clean, tmp_path / "o", trust_pickle=True)
    (tmp_path / "o").mkdir()
    fails("o: output directory exists", import_poison, tmp_path / "rows.pt", clean, tmp_path / "o")
