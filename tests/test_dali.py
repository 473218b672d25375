"""ImageFolder trees through the DALI pipeline (CPU mode here) and the fallback loader: plan, poisons, trainer, bad input."""
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pst_fast.cli import main
from pst_fast.data import folder_loader as fl
from pst_fast.data.folder import is_image_folder, scan, split_dir
from pst_fast.data.folder_loader import IMAGENET_MEAN, IMAGENET_STD, folder_loader
from pst_fast.data.folder_poison import write_folder_poison
from pst_fast.run import identity, train
from pst_fast.training import Hooks, TrainConfig

ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"
PER_CLASS = {"train": 20, "test": 6}  # CIFAR-10 files NNNN.jpg with NNNN below this, per class
LEVEL_BOUND = 1  # max |DALI - fallback| in pixel levels at 64 px (measured on 2000 CIFAR-10 test images; shrinking allows up to 4)


def levels(x: torch.Tensor) -> np.ndarray:
    """Normalized (B, C, H, W) float batch -> pixel levels (B, H, W, C) float64 (exact integers up to float error)."""
    m, s = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    return x.permute(0, 2, 3, 1).double().numpy() * (255 * s) + 255 * m


def synthesize(root: Path, classes=("ant", "bee", "cat", "dog"), per_class=PER_CLASS) -> Path:
    """An ImageFolder tree of 32x32 JPEGs, each class a colour tint plus noise."""
    rng = np.random.default_rng(0)
    for split, n in per_class.items():
        for k, cls in enumerate(classes):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                x = np.clip(40 + 50 * k + rng.normal(0, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(x).save(root / split / cls / f"{i:04d}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """10 classes x (20 train + 6 test) CIFAR-10 JPEGs from the shared archive, or synthesized JPEGs without it."""
    root = tmp_path_factory.mktemp("c10")
    if not ARCHIVE.is_file():
        return synthesize(root)
    with tarfile.open(ARCHIVE, "r|gz") as tar:
        for m in tar:
            parts = m.name.split("/")
            if m.isfile() and len(parts) == 3 and parts[0] in PER_CLASS and int(parts[2][:4]) < PER_CLASS[parts[0]]:
                (root / parts[0] / parts[1]).mkdir(parents=True, exist_ok=True)
                (root / m.name).write_bytes(tar.extractfile(m).read())
    return root


@pytest.fixture(scope="module")
def cifar_tree(tree) -> Path:
    if not ARCHIVE.is_file():
        pytest.skip(f"the shared CIFAR-10 JPEG archive is not at {ARCHIVE}")
    return tree


@pytest.fixture(scope="module")
def splits(tree):
    return scan(tree / "train"), scan(tree / "test")


def dali():
    pytest.importorskip("nvidia.dali")
    return "dali"


def batches(loader):
    out = list(loader)
    return torch.cat([b.x for b in out]), torch.cat([b.y for b in out]), torch.cat([b.idx for b in out])


# ---------------------------------------------------------------- tree detection and scanning

def test_classes_sorted_as_strings_labels_from_that_list(tmp_path, tiny_dataset):
    root = synthesize(tmp_path / "digits", classes=("10", "2", "9"), per_class={"train": 3})
    split = scan(root / "train")
    assert split.classes == ["10", "2", "9"]
    assert [Path(f).parent.name for f in split.files] == ["10"] * 3 + ["2"] * 3 + ["9"] * 3
    assert split.labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3 and split.sizes.tolist() == [[32, 32]] * 9
    _, y, idx = batches(folder_loader("fallback", split, batch_size=4, image_size=8, augment=False, shuffle=False))
    assert y.tolist() == split.labels[idx.numpy()].tolist()
    assert is_image_folder(root) and is_image_folder(root / "train")
    assert not is_image_folder(tiny_dataset) and not is_image_folder(tmp_path / "none")
    assert split_dir(root / "train", "train") == root / "train"  # a single split folder


def test_auto_picks_dali_only_when_it_imports(monkeypatch):
    monkeypatch.setattr(fl, "dali_available", lambda: False)
    assert fl.resolve_loader("auto") == "fallback"
    with pytest.raises(fl.PstFastError, match="--loader dali: nvidia.dali does not import"):
        fl.resolve_loader("dali")
    monkeypatch.setattr(fl, "dali_available", lambda: True)
    assert fl.resolve_loader("auto") == "dali"


def test_package_import_does_not_import_dali():
    code = "import sys, pst_fast.cli, pst_fast.training, pst_fast.data.dali; sys.exit('nvidia.dali' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ---------------------------------------------------------------- the DALI pipeline (CPU mode)

@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_dali_cpu_shapes_dtypes_labels(cifar_tree, layout):
    split = scan(cifar_tree / "train")
    loader = folder_loader(dali(), split, batch_size=64, image_size=40, seed=1, layout=layout)
    assert loader.device_id is None and "device_id=None" in loader.describe()
    assert split.classes == sorted(os.listdir(cifar_tree / "train")) and len(loader) == 200 // 64 == 3
    for x, y, idx in loader:
        assert x.shape == (64, 3, 40, 40) and x.dtype == torch.float32 and y.dtype == idx.dtype == torch.int64
        assert x.is_contiguous(memory_format=torch.channels_last if layout == "channels_last" else torch.contiguous_format)
        assert y.tolist() == split.labels[idx.numpy()].tolist()
        assert [split.classes[k] for k in y.tolist()] == [Path(split.files[i]).parent.name for i in idx.tolist()]
    assert loader.epoch == 1


def test_dali_shards_cover_every_file_once_and_seeds_repeat(cifar_tree):
    split = scan(cifar_tree / "train")
    shards = [folder_loader(dali(), split, batch_size=16, image_size=32, seed=3, drop_last=False, shard_id=i, num_shards=3) for i in range(3)]
    seen = [batches(s)[2] for s in shards]
    assert sorted(torch.cat(seen).tolist()) == list(range(len(split)))
    assert [len(s) for s in seen] == [66, 67, 67] == [s.num_samples for s in shards]
    loader = folder_loader("dali", split, batch_size=50, image_size=32, seed=3)
    a = batches(loader)
    loader.set_epoch(0)
    b = batches(loader)
    c = batches(loader)  # epoch 1
    assert torch.equal(a[2], b[2]) and torch.equal(a[0], b[0]) and not torch.equal(a[2], c[2])
    assert not torch.equal(a[2], torch.arange(len(a[2])))


@pytest.mark.parametrize("augment", [False, True])
def test_dali_matches_fallback(cifar_tree, augment):
    split = scan(cifar_tree / "test")
    kw = dict(batch_size=25, image_size=64, seed=5, augment=augment)
    (xd, yd, id_), (xf, yf, if_) = batches(folder_loader(dali(), split, **kw)), batches(folder_loader("fallback", split, **kw))
    assert torch.equal(yd, yf) and torch.equal(id_, if_)
    diff = np.abs(levels(xd) - levels(xf))
    assert diff.max() <= LEVEL_BOUND + 1e-3, diff.max()
    assert diff.mean() < 0.5


# ---------------------------------------------------------------- poisons in the pipeline

@pytest.mark.parametrize("kind", ["fallback", "dali"])
@pytest.mark.parametrize("per", ["class", "sample"])
def test_poison_is_added_before_flip_with_clamping(splits, kind, per):
    split = splits[0]
    if kind == "dali":
        dali()
    rng = np.random.default_rng(7)
    delta = rng.integers(-120, 121, (split.num_classes if per == "class" else len(split), 24, 24, 3)).astype(np.int8)
    kw = dict(batch_size=32, image_size=24, seed=2, augment=True)
    clean, poisoned = folder_loader(kind, split, **kw), folder_loader(kind, split, delta=delta, **kw)
    x0, y, idx = batches(clean)
    x1, _, idx1 = batches(poisoned)
    assert torch.equal(idx, idx1)
    u0, u1 = np.rint(levels(x0)), np.rint(levels(x1))
    assert np.abs(levels(x1) - u1).max() < 1e-3
    flips = np.concatenate([v.flips for v in clean.plan(0).views])
    rows = delta[split.labels[idx.numpy()] if per == "class" else idx.numpy()].astype(np.float64)
    unflip = lambda a: np.where(flips[:, None, None, None], a[:, :, ::-1], a)  # noqa: E731
    expected = unflip(np.clip(unflip(u0) + rows, 0, 255))
    assert flips.any() and not flips.all()
    np.testing.assert_array_equal(u1, expected)
    assert (u1 != u0).mean() > 0.5 and (u1 == 0).any() and (u1 == 255).any()


def test_delta_of_the_wrong_size_is_refused(splits, fails):
    fails(r"delta: expected int8 \(K=.*at the image size 24", folder_loader, "fallback", splits[0], image_size=24,
          delta=np.zeros((1, 24, 24, 3), np.int8))


# ---------------------------------------------------------------- the trainer

@pytest.mark.parametrize("kind", ["dali", "fallback"])
def test_train_on_an_image_folder(tree, tmp_path, capsys, kind):
    if kind == "dali":
        dali()
    out = tmp_path / "run"
    argv = ["train", "--data", str(tree), "--loader", kind, "--image-size", "64", "--max-steps", "20", "--batch-size", "16",
            "--epochs", "2", "--eval-batch-size", "64", "--out", str(out)]
    assert main(argv) == 0
    assert f"loader: {kind}" in capsys.readouterr().out
    s = json.loads((out / "summary.json").read_text())
    rec = json.loads((out / "data.json").read_text())
    assert rec["train"] == len(scan(tree / "train")) and rec["skipped"] == {"train": [], "test": []}
    assert s["steps"] == min(20, 2 * (rec["train"] // 16)) and s["loader"] == kind and 0 <= s["final_test_acc"] <= 1


def first_batch(root: Path, kind: str, **options) -> torch.Tensor:
    """The first training batch x of a one-step run on the tree ``root`` (no flips), captured by a loss hook."""
    seen = []

    def loss(fwd, x, y, state):
        seen.append(x.clone())
        return torch.nn.functional.cross_entropy(fwd(x), y)

    train(TrainConfig(data=str(root), loader=kind, image_size=16, batch_size=8, epochs=1, max_steps=1, flip=False, quiet=True, **options),
          hooks=Hooks(loss=loss))
    return seen[0]


@pytest.mark.parametrize("kind", ["fallback", "dali"])
@pytest.mark.parametrize("per", ["class", "sample"])
def test_train_with_a_poison_directory(tmp_path, kind, per):
    if kind == "dali":
        dali()
    root = synthesize(tmp_path / "t", per_class={"train": 8, "test": 4})
    split = scan(root / "train")
    delta = np.random.default_rng(3).integers(-100, 101, (4 if per == "class" else 32, 16, 16, 3)).astype(np.int8)
    write_folder_poison(tmp_path / "p", delta, split, 16, {"attack": "test", "params": {}})
    assert sorted(os.listdir(root / "train")) == ["ant", "bee", "cat", "dog"]  # nothing written into the tree
    clean, poisoned = first_batch(root, kind), first_batch(root, kind, poison=str(tmp_path / "p"))
    order = folder_loader(kind, split, batch_size=8, image_size=16, seed=0).plan(0).views[0].idx
    rows = delta[split.labels[order] if per == "class" else order].astype(np.float64)
    u0, u1 = np.rint(levels(clean)), np.rint(levels(poisoned))
    np.testing.assert_array_equal(u1, np.clip(u0 + rows, 0, 255))
    assert (u1 == 0).any() or (u1 == 255).any()


def test_poison_directory_mismatches_are_refused(tmp_path, capsys):
    root = synthesize(tmp_path / "t", per_class={"train": 8, "test": 4})
    split = scan(root / "train")
    write_folder_poison(tmp_path / "cw", np.full((4, 16, 16, 3), 8, np.int8), split, 16, {"attack": "test", "params": {}})
    write_folder_poison(tmp_path / "sw", np.full((32, 16, 16, 3), 8, np.int8), split, 16, {"attack": "test", "params": {}})
    argv = ["train", "--data", str(root), "--loader", "fallback", "--max-steps", "1", "--batch-size", "8", "--epochs", "1", "--quiet"]
    assert main(argv + ["--image-size", "16", "--poison", str(tmp_path / "cw"), "--out", str(tmp_path / "run")]) == 0
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["poisoned"] is True and s["config"]["poison"] == str(tmp_path / "cw")
    assert "made at 16 px, the run reads 24 px" in one_line_error(capsys, argv + ["--image-size", "24", "--poison", str(tmp_path / "cw")])
    assert "expected a directory with delta.npy and meta.json" in one_line_error(capsys, argv + ["--image-size", "16", "--poison", str(root)])
    (root / "train" / "dog" / "0007.jpg").unlink()
    assert "made for 32 training images" in one_line_error(capsys, argv + ["--image-size", "16", "--poison", str(tmp_path / "sw")])
    assert main(argv + ["--image-size", "16", "--poison", str(tmp_path / "cw")]) == 0  # class-wise: only the classes matter
    (root / "train" / "emu").mkdir()
    (root / "test" / "emu").mkdir()
    for split_name in ("train", "test"):
        Image.new("RGB", (32, 32)).save(root / split_name / "emu" / "0.jpg")
    assert "made for other classes than" in one_line_error(capsys, argv + ["--image-size", "16", "--poison", str(tmp_path / "cw")])
    with pytest.raises(fl.DataError, match="output directory exists"):
        write_folder_poison(tmp_path / "cw", np.zeros((5, 16, 16, 3), np.int8), scan(root / "train"), 16, {})


def test_poison_identity_only_when_set():
    assert "poison" not in identity(TrainConfig()) and identity(TrainConfig(poison="p"))["poison"] == "p"


def test_loader_options_are_for_image_folders_only(tiny_dataset, capsys):
    root = tiny_dataset.parent
    (root / "test").symlink_to(tiny_dataset)
    (root / "train").symlink_to(tiny_dataset)
    assert main(["train", "--data", str(root), "--image-size", "64", "--max-steps", "1"]) == 2
    assert "--image-size, --skip-bad and --poison apply to ImageFolder trees" in capsys.readouterr().err


# ---------------------------------------------------------------- bad input

def one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def test_empty_folders(tmp_path, capsys):
    (tmp_path / "a" / "train" / "cat").mkdir(parents=True)
    (tmp_path / "a" / "test" / "cat").mkdir(parents=True)
    assert "no images in" in one_line_error(capsys, ["train", "--data", str(tmp_path / "a"), "--loader", "fallback"])
    (tmp_path / "b" / "train" / "x").mkdir(parents=True)
    (tmp_path / "b" / "train" / "x" / "notes.txt").write_text("no images")
    assert "no images in" in one_line_error(capsys, ["train", "--data", str(tmp_path / "b"), "--loader", "fallback"])
    (tmp_path / "c" / "test").mkdir(parents=True)
    (tmp_path / "c" / "train" / "cat").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "c" / "train" / "cat" / "0.jpg")
    assert "no class folders" in one_line_error(capsys, ["train", "--data", str(tmp_path / "c"), "--loader", "fallback"])


def test_unreadable_jpeg_fails_or_is_skipped(tmp_path, capsys):
    root = synthesize(tmp_path / "t", per_class={"train": 8, "test": 4})
    bad = root / "train" / "bee" / "0003.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated
    argv = ["train", "--data", str(root), "--loader", "fallback", "--image-size", "16", "--max-steps", "2", "--batch-size", "8",
            "--epochs", "1", "--out", str(tmp_path / "run")]
    err = one_line_error(capsys, argv)
    assert f"{bad}: unreadable image" in err and "--skip-bad" in err
    assert main(argv[:-1] + [str(tmp_path / "skip"), "--skip-bad"]) == 0
    assert "1 unreadable images skipped" in capsys.readouterr().out
    rec = json.loads((tmp_path / "skip" / "data.json").read_text())
    assert rec["skipped"] == {"train": ["bee/0003.jpg"], "test": []} and rec["train"] == 31


def test_class_folder_removed_between_runs(tmp_path, capsys):
    root = synthesize(tmp_path / "t", per_class={"train": 8, "test": 4})
    argv = ["train", "--data", str(root), "--loader", "fallback", "--image-size", "16", "--batch-size", "8", "--epochs", "2",
            "--max-steps", "3", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    (tmp_path / "run" / "summary.json").unlink()  # as if killed after its first epoch
    for split in ("train", "test"):
        for f in (root / split / "cat").iterdir():
            f.unlink()
        (root / split / "cat").rmdir()
    err = one_line_error(capsys, argv)
    assert "not the data this run started with (classes gone: cat; train images 32 -> 24; test images 16 -> 12" in err


# ---------------------------------------------------------------- EM generated on a tree

@pytest.mark.parametrize("attack,rows", [("em-class", 2), ("em", 32)])
def test_em_on_a_tree_writes_a_poison_directory(tmp_path, capsys, attack, rows):
    root = synthesize(tmp_path / "t", classes=("ant", "bee"), per_class={"train": 16, "test": 4})
    argv = ["poison", "--attack", attack, "--data", str(root), "--image-size", "32", "--seed", "1", "--device", "cpu",
            "--max-rounds", "1", "--train-steps", "2", "--steps", "2", "--batch-size", "16", "--model", "fastnet-small"]
    for out in ("p", "q"):
        assert main(argv + ["--out", str(tmp_path / out)]) == 0
    delta = np.load(tmp_path / "p" / "delta.npy")
    meta = json.loads((tmp_path / "p" / "meta.json").read_text())
    assert delta.shape == (rows, 32, 32, 3) and delta.dtype == np.int8 and 0 < np.abs(delta).max() <= 8
    assert meta["attack"] == attack and meta["image_size"] == 32 and meta["classes"] == ["ant", "bee"] and meta["train"] == 32
    np.testing.assert_array_equal(delta, np.load(tmp_path / "q" / "delta.npy"))  # deterministic for a seed
    assert sorted(os.listdir(root / "train")) == ["ant", "bee"]
    train_argv = ["train", "--data", str(root), "--loader", "fallback", "--image-size", "32", "--poison", str(tmp_path / "p"),
                  "--max-steps", "2", "--batch-size", "16", "--epochs", "1", "--quiet", "--out", str(tmp_path / "run")]
    assert main(train_argv) == 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["poisoned"] is True


@pytest.mark.parametrize("class_wise", [False, True])
def test_em_on_a_tree_decoded_once_equals_decoded_per_batch(tmp_path, monkeypatch, class_wise):
    from pst_fast.attacks.em import EMClassParams, EMParams, error_minimizing_tree

    split = scan(synthesize(tmp_path / "t", classes=("ant", "bee", "cat"), per_class={"train": 12, "test": 1}) / "train")
    p = (EMClassParams if class_wise else EMParams)(max_rounds=2, train_steps=2, steps=2, batch_size=16, model="fastnet-small")
    out = {}
    for budget in ("0", "1"):
        monkeypatch.setenv("PST_FAST_DECODE_CACHE_GB", budget)
        out[budget] = error_minimizing_tree(split, 24, p, seed=3, class_wise=class_wise, progress=False)
    assert out["0"][1]["decoded"].startswith("every batch") and out["1"][1]["decoded"].startswith("once")
    np.testing.assert_array_equal(out["0"][0], out["1"][0])
    assert out["0"][1]["surrogate_acc"] == out["1"][1]["surrogate_acc"]


def test_other_attacks_refuse_trees(tmp_path, capsys):
    root = synthesize(tmp_path / "t", classes=("ant", "bee"), per_class={"train": 2, "test": 1})
    err = one_line_error(capsys, ["poison", "--attack", "tap", "--data", str(root), "--out", str(tmp_path / "p")])
    assert "attack tap reads the canonical format" in err


# ---------------------------------------------------------------- SAL on a tree

@pytest.mark.parametrize("kind", ["fallback", "dali"])
def test_sal_on_a_tree(tmp_path, kind):
    from pst_fast.metrics.record import SALRecord

    if kind == "dali":
        dali()
    root = synthesize(tmp_path / "t", classes=("ant", "bee"), per_class={"train": 16, "test": 4})
    write_folder_poison(tmp_path / "p", np.full((32, 16, 16, 3), 4, np.int8), scan(root / "train"), 16, {"attack": "test", "params": {}})
    runs = []
    for out in ("a", "b"):
        assert main(["train", "--data", str(root), "--loader", kind, "--image-size", "16", "--poison", str(tmp_path / "p"), "--sal", "fast",
                     "--sal-args", "rounds=1,subset=12,batch_size=4", "--batch-size", "8", "--epochs", "1", "--quiet",
                     "--out", str(tmp_path / out)]) == 0
        runs.append(SALRecord.load(tmp_path / out))
    a, b = runs
    assert a.epochs == [0] and a.meta["poisoned"] is True and np.isfinite(a.matrix()).all() and (a.matrix() >= 0).all()
    assert np.array_equal(a.matrix(), b.matrix())  # the subset, order and views are drawn from the seed


# ---------------------------------------------------------------- PST on a tree

def test_pst_on_a_tree(tmp_path):
    """PST's probe reads the tree's training split through the data interface (its evaluation view, δ added)."""
    root = synthesize(tmp_path / "t", classes=("ant", "bee"), per_class={"train": 16, "test": 4})
    write_folder_poison(tmp_path / "p", np.full((2, 16, 16, 3), 8, np.int8), scan(root / "train"), 16, {"attack": "test", "params": {}})
    assert main(["train", "--data", str(root), "--loader", "fallback", "--image-size", "16", "--poison", str(tmp_path / "p"), "--defense", "pst",
                 "--defense-args", "check_every=1,probe_size=8", "--batch-size", "8", "--epochs", "1", "--quiet",
                 "--out", str(tmp_path / "run")]) == 0
    trace = json.loads((tmp_path / "run" / "pst.json").read_text())["trace"]
    assert trace and all(0 <= t["acc"] <= 1 and {"acc/gray", "acc/jpeg", "acc/blur", "shortcut"} <= set(t) for t in trace)
