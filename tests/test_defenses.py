"""Baseline defenses: every transform changes its input (and only as specified), ISS against Pillow, every
defense trains, bad parameters are refused."""
import json

import numpy as np
import pytest
import torch
from conftest import write_noise_dataset
from PIL import Image, ImageOps

from pst_fast.defenses import DEFENSES, transforms
from pst_fast.errors import PstFastError
from pst_fast.run import train

BATCH_TRANSFORMS = {
    "cutout": lambda x, g: transforms.cutout(x, 16, g),
    "mixup": lambda x, g: transforms.mix_pairs(x, 1.0, "mixup", g)[0],
    "cutmix": lambda x, g: transforms.mix_pairs(x, 1.0, "cutmix", g)[0],
    "plasma_brightness": lambda x, g: transforms.plasma_brightness(x, g, p=1.0),
    "plasma_contrast": lambda x, g: transforms.plasma_contrast(x, g, p=1.0),
    "channel_shuffle": lambda x, g: transforms.channel_shuffle(x, g, p=1.0),
    "trivial_augment": lambda x, g: transforms.trivial_augment(x, g, "wide"),
    "trivial_augment_kornia": transforms.trivial_augment,
    "ueraser": transforms.ueraser,
    "jpeg_batch": lambda x, g: transforms.jpeg_batch(x, 10),
}


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", BATCH_TRANSFORMS)
@pytest.mark.parametrize("shape", [(16, 3, 32, 32), (7, 3, 24, 20), (5, 1, 16, 16)])
def test_batch_transform_changes_input_and_is_reproducible(name, shape):
    x = torch.rand(shape, generator=gen(1))
    before = x.clone()
    a = BATCH_TRANSFORMS[name](x, gen(2))
    b = BATCH_TRANSFORMS[name](x, gen(2))
    assert torch.equal(x, before), "the input must not be modified in place"
    assert a.shape == x.shape and torch.equal(a, b)
    changed = (a - x).abs().amax((1, 2, 3)) > 1e-3
    if name == "channel_shuffle" and shape[1] == 1:
        assert not changed.any()
        return
    if name != "trivial_augment_kornia":  # one op for the whole batch: autocontrast or equalize barely change uniform noise
        assert (a - x).abs().mean() > 1e-3, f"{name} is (numerically) the identity"
    if name not in ("trivial_augment", "trivial_augment_kornia", "ueraser", "mixup", "cutmix", "channel_shuffle"):  # may draw an identity op, permutation or pair
        assert changed.all(), f"{name} left {int((~changed).sum())} of {len(x)} images unchanged"
    if name not in ("cutout",):
        assert a.min() >= 0 and a.max() <= 1


def test_cutout_square_and_mix_weights():
    x = torch.ones(64, 3, 32, 32)
    out = transforms.cutout(x, 16, gen())
    zeros = (out == 0).all(1).sum((1, 2))
    assert zeros.max() == 256 and zeros.min() >= 64  # a 16x16 square, clipped at most to a quarter at a corner
    x = torch.rand(32, 3, 8, 8, generator=gen())
    mixed, perm, lam = transforms.mix_pairs(x, 1.0, "mixup", gen())
    assert 0 <= lam <= 1 and torch.allclose(mixed, lam * x + (1 - lam) * x[perm])
    cut, perm, lam = transforms.mix_pairs(x, 1.0, "cutmix", gen())
    from_other = (cut != x).any(1).float().mean((1, 2))[perm != torch.arange(32)]
    assert torch.allclose(from_other, torch.full_like(from_other, 1 - lam), atol=1e-6)


def test_equalize_matches_pillow():
    rng = np.random.default_rng(0)
    imgs = rng.integers(40, 200, (6, 16, 16, 3), dtype=np.uint8)
    imgs[0] = 7  # a constant image is left alone
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    got = (transforms._equalize(x) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    want = np.stack([np.asarray(ImageOps.equalize(Image.fromarray(i))) for i in imgs])
    assert np.array_equal(got, want)


def test_color_ops_match_pillow():
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    level = torch.full((4,), 0.5)
    post = (transforms._color("posterize", x, torch.full((4,), 5)) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    assert np.array_equal(post, np.stack([np.asarray(ImageOps.posterize(Image.fromarray(i), 5)) for i in imgs]))
    sol = (transforms._color("solarize", x, 1 - level) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    t = 1 - level[0].item()
    assert np.array_equal(sol, np.where(imgs / 255 >= t, 255 - imgs, imgs))


@pytest.mark.parametrize("quality", [10, 50])
def test_batched_jpeg_is_close_to_libjpeg(quality):
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (6, 5, 5, 3)).astype(np.float32)  # smooth images: upsampled coarse noise
    imgs = np.asarray(torch.nn.functional.interpolate(torch.from_numpy(base).permute(0, 3, 1, 2), size=(30, 36), mode="bilinear")
                      .round().clamp(0, 255).byte().permute(0, 2, 3, 1))
    ref = transforms.jpeg(imgs, quality).astype(np.float32)
    got = transforms.jpeg_batch(torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255, quality) * 255
    err = np.abs(got.permute(0, 2, 3, 1).numpy() - ref).mean()
    assert err < 0.3 * np.abs(ref - imgs).mean() and err < 3, err
    gray = transforms.jpeg_batch(torch.from_numpy(imgs[..., :1]).permute(0, 3, 1, 2).float() / 255, quality) * 255
    assert np.abs(gray.permute(0, 2, 3, 1).numpy() - transforms.jpeg(np.ascontiguousarray(imgs[..., :1]), quality)).mean() < 3


def test_iss_transforms():
    rng = np.random.default_rng(2)
    imgs = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    gray = transforms.grayscale(imgs)
    pil = np.stack([np.asarray(Image.fromarray(i).convert("L")) for i in imgs])
    assert np.abs(gray[..., 0].astype(int) - pil).max() <= 1 and (gray == gray[..., :1]).all()
    assert set(np.unique(transforms.bit_depth(imgs, 2))) == {0, 64, 128, 192}  # ISS's posterize (the default since issue 18)
    assert set(np.unique(transforms.bit_depth(imgs, 2, "round"))) == {0, 85, 170, 255}
    j = transforms.jpeg(imgs, 10)
    assert j.dtype == np.uint8 and j.shape == imgs.shape and np.abs(j.astype(int) - imgs).mean() > 10
    assert np.array_equal(transforms.jpeg(imgs, 10), j)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return write_noise_dataset(tmp_path_factory.mktemp("small"), 64, 32)


@pytest.mark.parametrize("name", sorted(set(DEFENSES) - {"pst"}))
def test_every_defense_trains_and_is_deterministic(small, tmp_path, name):
    kw = dict(data=str(small), model="fastnet-small", epochs=1, batch_size=16, quiet=True, defense=name)
    if name == "ueraser-max":
        kw["defense_args"] = "repeats=3"
    a = train(out=str(tmp_path / "a"), **kw)
    b = train(out=str(tmp_path / "b"), **kw)
    assert a["final_test_acc"] == b["final_test_acc"]
    wa, wb = torch.load(tmp_path / "a" / "model.pt"), torch.load(tmp_path / "b" / "model.pt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    losses = [json.loads(line)["train_loss"] for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(losses))


def test_defenses_change_training(small, tmp_path):
    """Each defense trains differently from standard training on the same data and seed."""
    kw = dict(data=str(small), model="fastnet-small", epochs=1, batch_size=16, quiet=True, max_steps=2)
    ref = train(out=str(tmp_path / "standard"), **kw)
    ref_w = torch.load(tmp_path / "standard" / "model.pt")
    for name in sorted(set(DEFENSES) - {"pst", "pst-jpeg", "standard"}):  # PST is standard training until its detector fires (test_pst.py)
        train(out=str(tmp_path / name), defense=name, defense_args="repeats=2" if name == "ueraser-max" else "", **kw)
        w = torch.load(tmp_path / name / "model.pt")
        assert any(not torch.equal(w[k], ref_w[k]) for k in ref_w if w[k].is_floating_point()), name
    assert ref["steps"] == 2


def test_adversarial_training_perturbs_within_budget(small):
    from pst_fast.defenses.baselines import ATParams
    from pst_fast.models import create_model
    from pst_fast.pgd import PGD, perturb

    torch.manual_seed(0)
    model = create_model("fastnet-small", num_classes=4).eval()
    x = torch.rand(8, 3, 32, 32, generator=gen())
    y = torch.arange(8) % 4
    p = ATParams()
    delta = perturb(model, x, torch.zeros_like(x), y, PGD(p.steps, p.step_size, p.eps, direction=1, random_start=True), gen())
    assert delta.abs().max() <= p.eps + 1e-6 and (x + delta).min() >= 0 and (x + delta).max() <= 1
    ce = torch.nn.functional.cross_entropy
    with torch.no_grad():
        assert ce(model(x + delta), y) > ce(model(x), y)


@pytest.mark.parametrize("name,args,match", [
    ("iss-jpeg", "quality=0", "quality"),
    ("iss-jpeg", "quality=200", "quality"),
    ("iss-bdr", "bits=9", "bits"),
    ("mixup", "alpha=-1", "alpha"),
    ("cutout", "size=abc", "size"),
    ("at", "radius=3", "radius"),
    ("iss-gray", "x=1", "takes no arguments"),
])
def test_bad_defense_args(small, tmp_path, name, args, match):
    with pytest.raises(PstFastError, match=match) as e:
        train(data=str(small), model="fastnet-small", epochs=1, batch_size=16, quiet=True, defense=name, defense_args=args)
    assert "\n" not in str(e.value)


def test_gallery_cli(small, tmp_path, capsys):
    from pst_fast.cli import main

    main(["defenses", "--gallery", str(tmp_path / "g.png"), "--data", str(small)])
    assert capsys.readouterr().out.strip() == str(tmp_path / "g.png")
    assert Image.open(tmp_path / "g.png").size[1] > Image.open(tmp_path / "g.png").size[0]  # 9 rows of 8
