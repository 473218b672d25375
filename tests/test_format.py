"""Canonical dataset format: round trip, and every way a directory can be broken, with real bad files."""
import json

import numpy as np

from pst_fast.data.format import read_dataset, write_dataset


def test_round_trip_with_delta(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (6, 4, 4, 3), dtype=np.uint8)
    y = np.array([0, 1, 2, 0, 1, 2], np.int64)
    d = np.random.default_rng(1).integers(-8, 9, (3, 4, 4, 3)).astype(np.int8)
    meta = {"name": "t", "split": "train", "classes": ["a", "b", "c"], "source": "x", "attack": "lsp", "budget": 8}
    ds = write_dataset(tmp_path / "d", x, y, meta, delta=d)
    back = read_dataset(tmp_path / "d")
    assert np.array_equal(back.images, x) and np.array_equal(back.labels, y) and np.array_equal(back.delta, d)
    assert back.meta["attack"] == "lsp" and back.is_poisoned and back.num_classes == 3 and len(back) == 6
    assert back.shape == (4, 4, 3) and back.meta["shape"] == [6, 4, 4, 3] and len(back.meta["mean"]) == 3
    assert back.fingerprint == ds.fingerprint and len(back.fingerprint) == 64
    assert isinstance(back.images, np.memmap), "reads are memory-mapped"
    assert not list(tmp_path.glob(".*tmp*")), "temporary directory left behind"


def test_truncated_images(tiny_dataset, fails):
    p = tiny_dataset / "images.npy"
    p.write_bytes(p.read_bytes()[:-100])
    fails("images.npy: truncated file", read_dataset, tiny_dataset)
    p.write_bytes(b"\x93NUMPY")  # cut inside the header
    fails("images.npy: not a valid .npy file", read_dataset, tiny_dataset)


def test_wrong_image_dtype(tiny_dataset, fails):
    np.save(tiny_dataset / "images.npy", np.zeros((12, 8, 8, 3), np.float32))
    fails("images.npy: expected dtype uint8, got float32", read_dataset, tiny_dataset, verify=False)


def test_wrong_label_dtype_and_range(tiny_dataset, fails):
    np.save(tiny_dataset / "labels.npy", np.zeros(12, np.int32))
    fails("labels.npy: expected dtype int64, got int32", read_dataset, tiny_dataset, verify=False)
    np.save(tiny_dataset / "labels.npy", np.full(12, 5, np.int64))
    fails(r"labels must lie in \[0, 3\), found \[5, 5\]", read_dataset, tiny_dataset, verify=False)
    np.save(tiny_dataset / "labels.npy", np.full(12, -1, np.int64))
    fails(r"found \[-1, -1\]", read_dataset, tiny_dataset, verify=False)


def test_mismatched_lengths(tiny_dataset, fails):
    np.save(tiny_dataset / "labels.npy", np.zeros(11, np.int64))
    fails(r"labels.npy: expected shape \(12,\) to match images.npy, got \(11,\)", read_dataset, tiny_dataset, verify=False)


def test_shape_differs_from_meta(tiny_dataset, fails):
    np.save(tiny_dataset / "images.npy", np.zeros((12, 4, 4, 3), np.uint8))
    fails("differs from meta.json shape", read_dataset, tiny_dataset, verify=False)


def test_missing_meta_field_bad_json_and_version(tiny_dataset, fails):
    path = tiny_dataset / "meta.json"
    good = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in good.items() if k != "classes"}))
    fails(r"meta.json: missing field\(s\) classes", read_dataset, tiny_dataset)
    path.write_text(json.dumps(good | {"format_version": 99}))
    fails("format_version is int 99; expected the integer 1 or 2", read_dataset, tiny_dataset)
    path.write_text("[1, 2]")
    fails("meta.json: expected a JSON object", read_dataset, tiny_dataset)
    path.write_text("{not json")
    fails("meta.json: not valid JSON", read_dataset, tiny_dataset)


def test_checksum_mismatch_and_verify_false(tiny_dataset, fails):
    p = tiny_dataset / "images.npy"
    raw = bytearray(p.read_bytes())
    raw[-1] ^= 0xFF
    p.write_bytes(bytes(raw))
    fails("images.npy: sha256 mismatch with meta.json", read_dataset, tiny_dataset)
    assert read_dataset(tiny_dataset, verify=False).images[-1, -1, -1, -1] == raw[-1]


def test_object_array_refused(tiny_dataset, fails):
    np.save(tiny_dataset / "labels.npy", np.array([object()] * 12), allow_pickle=True)
    fails("labels.npy: object arrays are refused", read_dataset, tiny_dataset, verify=False)


def test_missing_files(tmp_path, tiny_dataset, fails):
    (tiny_dataset / "labels.npy").unlink()
    fails("labels.npy: missing file", read_dataset, tiny_dataset)
    fails("not a dataset directory", read_dataset, tmp_path / "nowhere")


def test_bad_delta_on_read(tiny_dataset, fails):
    np.save(tiny_dataset / "delta.npy", np.zeros((12, 8, 8, 3), np.int16))
    fails("delta.npy: expected dtype int8, got int16", read_dataset, tiny_dataset, verify=False)
    np.save(tiny_dataset / "delta.npy", np.zeros((5, 8, 8, 3), np.int8))
    fails(r"delta.npy: expected shape \(N=12 or K=3", read_dataset, tiny_dataset, verify=False)


def test_write_refusals(tiny_dataset, fails):
    x, y = np.zeros((2, 4, 4, 3), np.uint8), np.zeros(2, np.int64)
    meta = {"name": "t", "split": "train", "classes": ["a"], "source": "x"}
    fails("output directory exists", write_dataset, tiny_dataset, x, y, meta)
    fails("delta.npy: expected shape", write_dataset, tiny_dataset.parent / "new", x, y, meta, delta=np.zeros((5, 4, 4, 3), np.int8))
    fails(r"missing field\(s\) source", write_dataset, tiny_dataset.parent / "new", x, y, {k: meta[k] for k in ("name", "split", "classes")})
    fails("expected dtype uint8, got float64", write_dataset, tiny_dataset.parent / "new", x.astype(float), y, meta)
    assert not (tiny_dataset.parent / "new").exists()


def test_channel_stats_match_numpy():
    from pst_fast.data.format import channel_stats

    x = np.random.default_rng(0).integers(0, 256, (300, 6, 5, 3), dtype=np.uint8)
    mean, std = channel_stats(x)
    np.testing.assert_allclose(mean, (x / 255.0).mean((0, 1, 2)), atol=1e-12)
    np.testing.assert_allclose(std, (x / 255.0).std((0, 1, 2)), atol=1e-12)


def test_describe_names_the_dataset_and_poison_not_the_directory(tmp_path, image_tree):
    from pst_fast.attacks import poison
    from pst_fast.data import describe

    clean = tmp_path / "tmpab12cd"  # a scratch directory holding the dataset "noise4"
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        write_dataset(clean / split, rng.integers(0, 256, (8, 8, 8, 3), dtype=np.uint8), np.arange(8) % 4,
                      {"name": "noise4", "split": split, "classes": list("abcd"), "source": "test"})
    assert describe(clean) == "noise4" == describe(clean / "test") and describe("cifar10-mini") == "cifar10-mini"
    poison("random", str(clean), str(tmp_path / "scratch"), progress=False)
    assert describe(tmp_path / "scratch") == "noise4 + random" == describe(tmp_path / "scratch" / "train")
    tree = image_tree(classes=("a", "b", "c", "d"))  # an ImageFolder tree (no meta.json) and a poison directory for it
    poison("random", str(tree), str(tmp_path / "tp"), image_size=8, progress=False)
    assert describe(tree) == "tree" and describe(tree, tmp_path / "tp") == "tree + random"
    assert describe(tmp_path / "nothing-here") == "nothing-here"
