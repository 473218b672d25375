"""Attacks: every registered attack keeps its budget on the saved uint8 images and keeps the labels."""
import numpy as np
import pytest

from pst_fast import data
from pst_fast.attacks import ATTACKS, poison
from pst_fast.data.format import write_dataset
from pst_fast.errors import PstFastError

SMALL = {"em": dict(steps=2, train_steps=2, max_rounds=1, batch_size=64),
         "em-class": dict(steps=2, train_steps=2, max_rounds=1, batch_size=64),
         "rem": dict(steps=2, samples=2, adv_steps=2, train_steps=4, perturb_every=2, batch_size=32),
         "tap": dict(steps=4, restarts=2, surrogate_epochs=1, batch_size=64),
         "hypo": dict(steps=3, surrogate_epochs=1, batch_size=64)}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    rng = np.random.default_rng(0)
    for split, n in (("train", 120), ("test", 40)):
        x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        x[:5] = 0
        x[5:10] = 255  # saturated images: clamping must keep the budget
        write_dataset(root / split, x, np.arange(n, dtype=np.int64) % 4, {"name": "c", "split": split, "classes": list("abcd"), "source": "t"})
    return root


@pytest.mark.parametrize("name", list(ATTACKS))
def test_budget_and_labels(name, clean, tmp_path):
    poison(name, str(clean), str(tmp_path / "p"), seed=1, progress=False, **SMALL.get(name, {}))
    p, c = data.load(tmp_path / "p", "train"), data.load(clean, "train")
    assert np.array_equal(p.labels, c.labels) and p.meta["attack"] == name and p.meta["clean_fingerprint"] == c.fingerprint
    assert np.array_equal(data.load(tmp_path / "p", "test").images, data.load(clean, "test").images)
    d = (p.images.astype(np.int32) - c.images.astype(np.int32)) / 255.0
    spec = ATTACKS[name]
    prm = p.meta["params"]
    if spec.norm == "linf":
        assert np.abs(d).max() <= prm["eps"] + 1e-9
    elif spec.norm == "l2":  # the official export rounds (floor / nearest): up to 1 resp. 1/2 level per entry beyond the radius
        radius = p.meta["generation"]["l2_radius"] if name == "lsp" else prm["eps"]
        slack = {"trunc": 0.0, "nearest": 0.5, "floor": 1.0}[prm["rounding"]] * np.sqrt(d[0].size) / 255
        assert np.linalg.norm(d.reshape(len(d), -1), axis=1).max() <= radius + slack + 1e-9
    elif spec.norm == "l0":
        assert ((np.abs(d).max(-1) > 0).reshape(len(d), -1).sum(1) <= prm["pixels"]).all()
    assert np.abs(d).max() > 0, "the attack changed nothing"
    if p.delta is not None:
        assert np.array_equal(np.clip(c.images.astype(np.int16) + p.delta, 0, 255), p.images)


def test_seeded(clean, tmp_path):
    for out, seed in (("a", 3), ("b", 3), ("c", 4)):
        poison("random-class", str(clean), str(tmp_path / out), seed=seed, progress=False)
    a, b, c = (data.load(tmp_path / o).images for o in "abc")
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize(
    "attack, kw, match",
    [
        ("nope", {}, "unknown attack 'nope'"),
        ("random", {"eps": 0.0}, "eps=0.0 must lie in"),
        ("random", {"eps": 2.0}, "eps=2.0 must lie in"),
        ("random", {"radius": 1}, "attack random: parameter radius: unknown key; expected one of"),
        ("lsp", {"patch_size": "big"}, "parameter patch_size='big': expected an integer"),
        ("em-class", {"sweep_portion": 0.0, "max_rounds": 1}, "--sweep-portion 0.0: expected a fraction"),
    ],
)
def test_bad_input(attack, kw, match, clean, tmp_path):
    with pytest.raises(PstFastError, match=match):
        poison(attack, str(clean), str(tmp_path / "o"), progress=False, **kw)


def test_existing_output(clean, tmp_path):
    (tmp_path / "o").mkdir()
    with pytest.raises(PstFastError, match="output directory exists"):
        poison("random", str(clean), str(tmp_path / "o"), progress=False)


def test_tap_reuses_a_trained_surrogate_and_reports_success(clean, tmp_path):
    from pst_fast.run import train

    train(data=str(clean), model="fastnet-small", epochs=1, batch_size=60, device="cpu", quiet=True, out=str(tmp_path / "run"))
    poison("tap", str(clean), str(tmp_path / "p"), seed=0, progress=False, steps=3, restarts=1,
           surrogate_init=str(tmp_path / "run" / "model.pt"))
    gen = data.load(tmp_path / "p").meta["generation"]
    assert gen["surrogate_init"].endswith("model.pt") and 0.0 <= gen["success_rate"] <= 1.0
    with pytest.raises(PstFastError, match="--surrogate-init .*no such file"):
        poison("tap", str(clean), str(tmp_path / "q"), progress=False, surrogate_init=str(tmp_path / "missing.pt"))


def test_surrogate_must_be_clean(clean, tmp_path):
    poison("random", str(clean), str(tmp_path / "p"), progress=False)
    with pytest.raises(PstFastError, match="must be trained on clean data"):
        poison("hypo", str(tmp_path / "p"), str(tmp_path / "q"), progress=False, steps=1)


@pytest.mark.parametrize("name", ["em", "rem", "hypo"])
def test_bf16_surrogate_keeps_the_budget(name, clean, tmp_path):
    """amp=on: the surrogate trains and attacks under bf16 autocast; the poison keeps the budget and differs from float32's."""
    for amp in ("on", "off"):
        poison(name, str(clean), str(tmp_path / amp), seed=1, progress=False, amp=amp, **SMALL[name])
    on, off, c = data.load(tmp_path / "on", "train"), data.load(tmp_path / "off", "train"), data.load(clean, "train")
    assert on.meta["params"]["amp"] == "on" and not np.array_equal(on.images, off.images)
    assert np.abs(on.images.astype(np.int32) - c.images.astype(np.int32)).max() / 255.0 <= on.meta["params"]["eps"] + 1e-9


def test_amp_parameter_identity_and_choices():
    from pst_fast.attacks.base import params_from
    from pst_fast.options import identity

    spec = ATTACKS["em"]
    assert "amp" not in identity(params_from(spec, {})) and identity(params_from(spec, {"amp": "on"}))["amp"] == "on"
    with pytest.raises(PstFastError, match="amp='fast': expected one of auto, on, off"):
        params_from(spec, {"amp": "fast"})
