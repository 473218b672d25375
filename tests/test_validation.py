"""Validation split carved from the training images: fixed class-balanced draw, clean versions of poisoned images."""
import numpy as np
import pytest

from pst_fast.data.format import read_dataset, write_dataset, write_poison
from pst_fast.data.validation import carve, holdout_indices
from pst_fast.run import train
from pst_fast.training import TrainConfig


@pytest.fixture
def clean_and_poison(tmp_path):
    rng = np.random.default_rng(0)
    splits = {}
    for split, n in (("train", 80), ("test", 20)):
        y = (np.arange(n) % 4).astype(np.int64)
        x = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
        splits[split] = write_dataset(tmp_path / "clean" / split, x, y, {"name": "c", "split": split, "classes": list("abcd"), "source": "t"})
    train_ds = splits["train"]
    delta = rng.integers(-8, 9, (80, 8, 8, 3)).astype(np.int8)
    poisoned = np.clip(train_ds.images.astype(np.int16) + delta, 0, 255).astype(np.uint8)
    effective = (poisoned.astype(np.int16) - train_ds.images).astype(np.int8)
    write_poison(tmp_path / "poison", train_ds, splits["test"], poisoned, effective, {"name": "p", "source": "t", "attack": "x"})
    no_delta = tmp_path / "poison-no-delta"
    write_poison(no_delta, train_ds, splits["test"], poisoned, None, {"name": "p", "source": "t", "attack": "x"})
    return tmp_path, train_ds


def test_draw_is_fixed_and_class_balanced():
    labels = np.arange(1000) % 10
    a, b = holdout_indices(labels, 10, 100), holdout_indices(labels, 10, 100)
    assert np.array_equal(a, b) and np.bincount(labels[a]).tolist() == [10] * 10


def test_poison_validation_images_are_clean(clean_and_poison):
    root, clean = clean_and_poison
    for name in ("poison", "poison-no-delta"):
        poison = read_dataset(root / name / "train")
        rest, val = carve(poison, 20)
        held = holdout_indices(np.asarray(clean.labels), 4, 20)
        assert np.array_equal(val.images, clean.images[held]) and not val.is_poisoned
        keep = np.setdiff1d(np.arange(80), held)
        assert np.array_equal(rest.images, poison.images[keep]) and rest.is_poisoned
        assert rest.fingerprint != poison.fingerprint


def test_too_large_a_split_is_refused(clean_and_poison, fails):
    _, clean = clean_and_poison
    fails("at most half of each class", carve, clean, 60)
    fails("at least one image per class", carve, clean, 3)


def test_training_evaluates_on_the_validation_split(clean_and_poison):
    root, _ = clean_and_poison
    s = train(TrainConfig(data=str(root / "poison"), model="fastnet-small", epochs=1, batch_size=16, val_split=20, quiet=True))
    assert "final_val_acc" in s and "final_test_acc" not in s and s["config"]["val_split"] == 20
