"""Fidelity: the official constants and behaviours of every attack, defense and metric (docs/fidelity.md), pinned so that
a later change cannot drift from them silently. Each official value was read in the repository named next to it."""
import dataclasses
import json

import numpy as np
import pytest
import torch
from conftest import write_noise_dataset

from pst_fast import data
from pst_fast.attacks import adversarial, em, rem, synthetic
from pst_fast.cli import build_parser
from pst_fast.data.format import ImageDataset, quantize
from pst_fast.defenses import baselines, transforms
from pst_fast.errors import PstFastError
from pst_fast.metrics.record import SALRecord
from pst_fast.metrics.sal import MODE_DEFAULTS, SALConfig, reference_loss
from pst_fast.metrics.ud import unlearnable_distance
from pst_fast.sweep import expand, parse_spec
from pst_fast.training import TrainConfig
from pst_fast.training.optim import make_optimizer
from pst_fast.training.protocols import PROTOCOLS, with_protocol

OFFICIAL = [  # (parameter class, field, official value, where it was read)
    (em.EMParams, "eps", 8 / 255, "HanxunH/Unlearnable-Examples samplewise exp_setting.sh"),
    (em.EMParams, "step_size", 0.8 / 255, "ibid."),
    (em.EMParams, "steps", 20, "ibid."),
    (em.EMParams, "train_steps", 10, "perturbation.py --train_step"),
    (em.EMParams, "stop_acc", 0.99, "--universal_stop_error 0.01"),
    (em.EMParams, "batch_size", 512, "perturbation.py"),
    (em.EMParams, "lr", 0.1, "configs/cifar10/resnet18.yaml"),
    (em.EMParams, "delta_init", "zero", "perturbation.py: --random_start off -> torch.zeros"),
    (em.EMParams, "grad_clip", 5.0, "trainer.py + resnet18.yaml grad_clip"),
    (em.EMClassParams, "steps", 1, "classwise exp_setting.sh --num_steps 1"),
    (em.EMClassParams, "stop_acc", 0.99, "classwise exp_setting.sh --universal_stop_error 0.01"),
    (em.EMClassParams, "sweep_portion", 0.2, "train_subset"),
    (rem.REMParams, "eps", 8 / 255, "fshp971/robust-unlearnable-examples gen_rem.sh --pgd-radius 8"),
    (rem.REMParams, "step_size", 1.6 / 255, "--pgd-step-size 1.6"),
    (rem.REMParams, "steps", 10, "--pgd-steps 10"),
    (rem.REMParams, "adv_eps", 4 / 255, "--atk-pgd-radius 4"),
    (rem.REMParams, "adv_step_size", 0.8 / 255, "--atk-pgd-step-size 0.8"),
    (rem.REMParams, "adv_steps", 10, "--atk-pgd-steps 10"),
    (rem.REMParams, "samples", 5, "--samp-num 5"),
    (rem.REMParams, "train_steps", 5000, "--train-steps 5000"),
    (rem.REMParams, "perturb_every", 1, "generate_robust_em.py --perturb-freq default 1"),
    (rem.REMParams, "lr", 0.1, "--lr 0.1"),
    (rem.REMParams, "lr_decay_every", 2000, "--lr-decay-freq 2000"),
    (rem.REMParams, "batch_size", 128, "--batch-size 128"),
    (adversarial.TAPParams, "step_size", 8 / 255 * 0.05, "lhfowl/adversarial_poisons: tau0 = eps/255/ds * tau, tau 0.05"),
    (adversarial.TAPParams, "schedule", "constant", "forgemaster_base.py: the decay is built for Adam-type optimizers only"),
    (adversarial.TAPParams, "steps", 250, "options.py --attackiter 250"),
    (adversarial.TAPParams, "restarts", 8, "options.py --restarts 8"),
    (adversarial.TAPParams, "restart_select", "set", "forgemaster_base.py _forge: argmin of the restarts' target loss"),
    (adversarial.TAPParams, "surrogate_epochs", 40, "optimization_strategy.py ConservativeStrategy"),
    (adversarial.TAPParams, "surrogate_label_smoothing", 0.0, "plain cross-entropy"),
    (adversarial.TAPParams, "batch_size", 512, "options.py --pbatch 512"),
    (adversarial.TAPParams, "targeted", True, "README --recipe targeted"),
    (adversarial.HYPOParams, "steps", 100, "TLMichael/Hypocritical-Perturbation poison_steps"),
    (adversarial.HYPOParams, "step_size", 0.8 / 255, "eps / 10"),
    (synthetic.LSPParams, "eps", 6 / 255, "dayu11/Availability-Attacks-Create-Shortcuts --eps 6"),
    (synthetic.LSPParams, "patch_size", 8, "--patchsize 8"),
    (synthetic.LSPParams, "class_sep", 10.0, "make_classification(class_sep=10.)"),
    (synthetic.LSPParams, "rounding", "floor", "clip(data*255).astype(np.uint8)"),
    (synthetic.OPSParams, "pixels", 1, "cychomatica/One-Pixel-Shotcut sparsity 1"),
    (synthetic.OPSParams, "score", "official", "perturb.py pixel_search"),
    (synthetic.ARParams, "eps", 1.0, "psandovalsegura/autoregressive-poisoning README --epsilon 1.0 --p_norm 2"),
    (synthetic.ARParams, "crop", 4, "noise_size 36, crop 4"),
    (synthetic.ARParams, "coefficients", "official", "autoregressive_params.py"),
    (synthetic.ARParams, "rounding", "nearest", "mul(255).add_(0.5) -> uint8"),
    (synthetic.CUDAParams, "blur", 0.3, "vinusankars/Convolution-based-Unlearnability blur_parameter 0.3"),
    (synthetic.CUDAParams, "kernel_size", 3, "ibid."),
    (baselines.JPEGParams, "quality", 10, "liuzrcc/ImageShortcutSqueezing README: JPEG-10"),
    (baselines.BitDepthParams, "bits", 2, "RandomPosterize(bits=2)"),
    (baselines.BitDepthParams, "method", "posterize", "ibid."),
    (baselines.ATParams, "eps", 8 / 255, "Madry et al. / APBench madrys.py"),
    (baselines.ATParams, "step_size", 2 / 255, "ibid."),
    (baselines.ATParams, "steps", 10, "ibid."),
    (baselines.UEraserParams, "policy", "kornia", "lafeat/ueraser ueraser.py: K.auto.TrivialAugment()"),
    (baselines.UEraserMaxParams, "repeats", 5, "ueraser README"),
    (SALConfig, "radius", 0.05, "MLsecurityLab/HowFarAreFromTrueUnlearnability --param_eps 0.05"),
    (SALConfig, "lr_min", 0.1, "--sharp_lr_min 0.1"),
    (SALConfig, "lr_max", 0.1, "--sharp_lr_max 0.1"),
    (SALConfig, "loss", "ce", "nn.CrossEntropyLoss()"),
    (SALConfig, "l0", "train-log", "the epoch's train_loss"),
]


@pytest.mark.parametrize("cls,name,value,where", OFFICIAL, ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_official_defaults(cls, name, value, where):
    default = {f.name: f.default for f in dataclasses.fields(cls)}[name]
    assert default == pytest.approx(value) if isinstance(value, float) else default == value, where


def test_official_sal_modes_and_ud_protocol():
    assert MODE_DEFAULTS["exact"] == dict(rounds=10, subset=0, every=1)  # --iter_num 10, every image, every epoch
    assert PROTOCOLS["official-ud"] == dict(model="resnet18", epochs=50, batch_size=256, optimizer="sgd", lr=0.1, momentum=0.9,
                                            nesterov=False, weight_decay=5e-4, schedule="constant", warmup_epochs=0.0,
                                            label_smoothing=0.0, grad_clip=0.0, crop_pad=4, flip=True, sal="exact")


# ------------------------------------------------------------------ OPS

def official_pixel_search(x: np.ndarray, y: np.ndarray, classes: int) -> list[tuple[int, int, list[int]]]:
    """The official ``pixel_search`` (sparsity 1), loop for loop, on uint8 (N, H, W, 3) images: (row, col, colour) per class."""
    h, w, _ = x.shape[1:]
    pts, picks = [], []
    for k in range(classes):
        img = x[y == k] / 255
        score = np.zeros((h * w, 8))
        for point in range(h * w):
            px, py = point // h, point % h
            for value in range(8):
                colour = np.array([value // 2 // 2, value // 2 % 2, value % 2])
                if [point, value] in pts:
                    score[point, value] = 0
                else:
                    d = np.abs(colour - img[:, px, py, :])
                    score[point, value] = np.mean(d) / np.std(d)
        rank = np.unravel_index(np.argsort(score, axis=None), score.shape)
        point, value = rank[0][-1], rank[1][-1]
        pts.append([point, value])
        picks.append((int(point // h), int(point % h), [value // 4, value // 2 % 2, value % 2]))
    return picks


def test_ops_picks_equal_the_official_search_with_exclusion():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 6, 6, 3), dtype=np.uint8)
    x[:, 2, 3] = rng.integers(0, 40, (30, 3))  # a dark pixel: white there is every class's best pick
    y = np.arange(30) % 3
    x[y == 1] = x[y == 0]  # class 1 = class 0: only the exclusion of class 0's pick makes their picks differ
    ds = ImageDataset(x, y, {"classes": ["a", "b", "c"], "name": "t"})
    got = [(p["row"], p["col"], p["colour"]) for p in synthetic.ops(ds, synthetic.OPSParams(), 0).info["pixels"]]
    want = official_pixel_search(x, y, 3)
    assert got == want and got[0] != got[1]
    channel_sum = [(p["row"], p["col"]) for p in synthetic.ops(ds, synthetic.OPSParams(score="channel-sum"), 0).info["pixels"]]
    assert channel_sum[0] == channel_sum[1]  # the earlier variant: no exclusion


# ------------------------------------------------------------------ LSP, AR: rounding, norms, coefficients

def test_official_roundings():
    clean = np.full((1, 1, 1, 3), 100, np.uint8)
    delta = np.array([0.7, -0.7, 0.3]).reshape(1, 1, 1, 3) / 255
    assert synthetic.publish(clean, delta, "floor").ravel().tolist() == [100, 99, 100]    # LSP: astype after clip
    assert synthetic.publish(clean, delta, "nearest").ravel().tolist() == [101, 99, 100]  # AR: + 0.5 then uint8
    assert synthetic.publish(clean, delta, "trunc").ravel().tolist() == [100, 100, 100]   # toward zero (not official)


@pytest.fixture(scope="module")
def mini():
    ds = data.load("cifar10-mini", "train")
    return ImageDataset(np.asarray(ds.images[::10]), np.asarray(ds.labels[::10]), ds.meta)


def published_l2(poison, clean) -> float:
    d = (poison.images.astype(np.int16) - clean.images.astype(np.int16)).reshape(len(clean), -1) / 255
    return float(np.linalg.norm(d, axis=1).mean())


def test_lsp_and_ar_published_norms(mini):
    """Measured once on every 10th cifar10-mini training image (1,000), seed 0 (docs/fidelity.md); the float radii are 6/255·√3072 and 1."""
    assert published_l2(synthetic.lsp(mini, synthetic.LSPParams(), 0), mini) == pytest.approx(1.2885, abs=1e-3)
    assert published_l2(synthetic.lsp(mini, synthetic.LSPParams(rounding="trunc"), 0), mini) == pytest.approx(1.1936, abs=1e-3)
    ar = synthetic.ar(mini, synthetic.ARParams(), 0)
    assert published_l2(ar, mini) == pytest.approx(0.9898, abs=1e-3)
    assert published_l2(synthetic.ar(mini, synthetic.ARParams(rounding="trunc"), 0), mini) == pytest.approx(0.9192, abs=1e-3)
    table = json.loads(synthetic.AR_COEFFICIENTS.read_text())
    assert table["source"]["commit"].startswith("bf350b0") and ar.info["coefficients"] == table["cifar10"]
    assert table["cifar10"][0][0] == [[0.1561, -0.071, 0.3743], [-0.1896, 0.0461, 0.6075], [0.0539, 0.0226, 0.0]]
    coefs = np.asarray(table["cifar100"])
    assert coefs.shape == (100, 3, 3, 3) and (coefs[:, :, 2, 2] == 0).all() and np.allclose(coefs.sum((2, 3)), 1, atol=3e-4)


def test_ar_refuses_what_the_published_coefficients_do_not_cover():
    gray = ImageDataset(np.zeros((4, 8, 8, 1), np.uint8), np.arange(4) % 2, {"classes": ["a", "b"], "name": "g"})
    with pytest.raises(PstFastError, match="3 channels.*coefficients=random"):
        synthetic.ar(gray, synthetic.ARParams(), 0)


# ------------------------------------------------------------------ ISS bit depth, UEraser

def test_bdr_posterizes_to_the_iss_levels():
    v = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    assert np.array_equal(transforms.bit_depth(v, 2), v & 0xC0)
    assert sorted(np.unique(transforms.bit_depth(v, 2)).tolist()) == [0, 64, 128, 192]


def test_ueraser_uses_kornias_trivial_augment_one_op_per_batch(monkeypatch):
    assert transforms.KORNIA_TRIVIAL_POLICY == {  # kornia/augmentation/auto/trivial_augment default_policy
        "autocontrast": None, "equalize": None, "rotate": (-30.0, 30.0), "posterize": (0.0, 4.0), "solarize": (0.0, 1.0),
        "contrast": (0.1, 1.9), "brightness": (0.1, 1.9), "sharpness": (0.1, 1.9), "shear_x": (-0.3, 0.3),
        "shear_y": (-0.3, 0.3), "translate_x": (-0.5, 0.5), "translate_y": (-0.5, 0.5)}
    top = torch.full((1,), 1 - 1e-7)
    assert transforms._kornia_value("rotate", top, 32, 32).item() == pytest.approx(np.radians(30))
    assert transforms._kornia_value("translate_x", top, 32, 32).item() == pytest.approx(16)  # half the side, not 32 px
    assert transforms._kornia_value("shear_y", top, 32, 32).item() == pytest.approx(0.3)
    assert transforms._kornia_value("posterize", top, 32, 32).item() == 3
    calls = []
    apply = transforms._apply
    monkeypatch.setattr(transforms, "_apply", lambda kind, x, value: calls.append((kind, len(x))) or apply(kind, x, value))
    x = torch.rand(64, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    for seed in range(5):
        transforms.trivial_augment(x, torch.Generator().manual_seed(seed))
    assert [n for _, n in calls] == [64] * 5  # one op on the whole batch, per call
    calls.clear()
    transforms.trivial_augment(x, torch.Generator().manual_seed(0), "wide")
    assert len(calls) > 1 and sum(n for _, n in calls) < 64  # per-image ops (identity draws skipped)


# ------------------------------------------------------------------ EM, REM, TAP behaviours

@pytest.fixture(scope="module")
def noise(tmp_path_factory):
    return write_noise_dataset(tmp_path_factory.mktemp("noise"), 64, 16)


def test_em_starts_at_zero_and_clips_the_surrogate_gradient(noise, monkeypatch):
    train = data.load(str(noise), "train")
    clips = []
    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda params, max_norm, **kw: clips.append(max_norm) or clip(params, max_norm, **kw))
    small = dict(steps=0, train_steps=2, max_rounds=1, batch_size=32, model="fastnet-small")
    for cls in (em.EMParams, em.EMClassParams):
        p = em.em if cls is em.EMParams else em.em_class
        out = p(train, cls(**small), 0, progress=False)
        assert np.array_equal(out.images, np.asarray(train.images)), "no PGD step: δ stays at its start, zero"
    assert clips == [5.0] * 4
    moved = em.em(train, em.EMParams(**small, delta_init="uniform", grad_clip=0.0), 0, progress=False)
    assert not np.array_equal(moved.images, np.asarray(train.images)) and clips == [5.0] * 4


def test_rem_reoptimizes_delta_at_every_training_step(noise, monkeypatch):
    train = data.load(str(noise), "train")
    calls = []
    monkeypatch.setattr(rem, "robust_min", lambda frozen, x, y, p, g: calls.append(len(x)) or torch.zeros_like(x))
    small = dict(train_steps=6, adv_steps=1, batch_size=32, model="fastnet-small")
    rem.rem(train, rem.REMParams(**small), 0, progress=False)
    assert calls == [32] * 6 + [32] * 2  # 6 training steps, then the final sweep over the 64 images
    calls.clear()
    rem.rem(train, rem.REMParams(**small, perturb_every=3), 0, progress=False)
    assert calls == [32] * 2 + [32] * 2


class FixedSurrogate:
    """A stand-in for the clean surrogate: logits grow with the image's mean intensity, class k's by k."""

    def frozen(self):
        return lambda z: z.mean((1, 2, 3))[:, None] * torch.arange(4.0) * 20


@pytest.mark.parametrize("select", ["set", "sample"])
def test_tap_keeps_the_official_restart(noise, monkeypatch, select):
    """restart_select=set keeps, for every image, the restart whose mean target loss over the whole set is lowest (official
    _forge); sample keeps each image's own best. The PGD configuration handed to the engine is the official one."""
    train = data.load(str(noise), "train")
    drawn = []

    def fake_perturb(frozen, x, delta, target, pgd, g):
        assert (pgd.step_size, pgd.schedule, pgd.steps, pgd.augment) == (pytest.approx(0.4 / 255), "constant", 250, True)
        d = (torch.rand(len(x), 1, 1, 1, generator=g) * 2 - 1).expand_as(x) * pgd.eps
        drawn.append((x, target, d))
        return d.clone()

    monkeypatch.setattr(adversarial, "clean_surrogate", lambda *a: (FixedSurrogate(), {}))
    monkeypatch.setattr(adversarial, "perturb", fake_perturb)
    out = adversarial.tap(train, adversarial.TAPParams(restarts=3, batch_size=32, restart_select=select), 0, progress=False)
    f = FixedSurrogate().frozen()
    obj = [torch.nn.functional.cross_entropy(f((x + d).clamp(0, 1)), t, reduction="none") for x, t, d in drawn]
    if select == "set":  # calls run restart by restart over the 2 batches
        scores = [float(torch.cat(obj[2 * r : 2 * r + 2]).mean()) for r in range(3)]
        kept = int(np.argmin(scores))
        delta = torch.cat([drawn[2 * kept][2], drawn[2 * kept + 1][2]])
        assert out.info["restart_scores"] == pytest.approx(scores) and out.info["restart_kept"] == kept
    else:  # calls run batch by batch, the 3 restarts of a batch in a row
        delta = torch.cat([torch.stack([drawn[3 * b + r][2] for r in range(3)])[torch.stack(obj[3 * b : 3 * b + 3]).argmin(0),
                                                                                  torch.arange(32)] for b in range(2)])
    assert np.array_equal(out.images, quantize(np.asarray(train.images), delta.permute(0, 2, 3, 1).numpy()))


# ------------------------------------------------------------------ SAL, UD, the official protocol

def test_sal_measures_plain_cross_entropy():
    scfg, log = SALConfig(), {"epoch": 0, "train_loss": 1.3, "train_ce": 0.9}
    assert reference_loss(scfg, TrainConfig(label_smoothing=0.2), log) == (0.9, 0.0)
    assert reference_loss(scfg, TrainConfig(label_smoothing=0.2, defense="mixup"), log) == (None, 0.0)  # re-measured, as official
    assert reference_loss(SALConfig(loss="train"), TrainConfig(label_smoothing=0.2), log) == (1.3, 0.2)
    with pytest.raises(PstFastError, match="no plain cross-entropy logged"):
        reference_loss(scfg, TrainConfig(label_smoothing=0.2), {"epoch": 0, "train_loss": 1.3})


def sal_record(path, sal, defense="standard", poisoned=False):
    meta = {"sal_config": {"mode": "fast"}, "model": "fastnet", "train_epochs": 1, "data": "d", "data_fingerprint": "f",
            "poisoned": poisoned, "seed": 0, "defense": defense, "defense_args": ""}
    rec = SALRecord([f"l{i}.weight" for i in range(len(sal))], meta)
    rec.epochs.append(0)
    for k in ("l0", "seconds"):
        rec.arrays[k].append(np.float32(0))
    for k in ("sal", "s_max", "s_min"):
        rec.arrays[k].append(np.asarray(sal, np.float32))
    for k in ("loss_max", "loss_min", "ratio_max", "ratio_min"):
        rec.arrays[k].append(np.zeros((1, len(sal)), np.float32))
    rec.save(path)
    return path


def test_ud_compares_with_the_clean_run_of_the_same_defense(tmp_path):
    std = sal_record(tmp_path / "clean", [0.1, 0.1, 0.9, 0.9])
    cut = sal_record(tmp_path / "clean-cutout", [0.1, 0.5, 0.6, 0.9], "cutout")
    poisoned = sal_record(tmp_path / "em-cutout", [0.1, 0.1, 0.55, 0.9], "cutout", poisoned=True)
    rep = unlearnable_distance([std, cut], [poisoned])
    assert rep["runs"][0]["clean"] == str(cut) and rep["runs"][0]["ud"] == pytest.approx(2 / 3)
    assert unlearnable_distance([std, cut], [poisoned], "standard")["runs"][0]["ud"] == pytest.approx(1.0)
    with pytest.raises(PstFastError, match="needs a clean run trained with defense cutout"):
        unlearnable_distance(std, [poisoned])


def test_official_ud_protocol_preset(tmp_path):
    args = build_parser("official-ud").parse_args(["train", "--protocol", "official-ud", "--model", "fastnet", "--epochs", "8"])
    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    assert (cfg.model, cfg.epochs, cfg.batch_size, cfg.label_smoothing, cfg.sal, cfg.nesterov, cfg.schedule) == \
        ("fastnet", 8, 256, 0.0, "exact", False, "constant")
    assert with_protocol({"protocol": "official-ud"})["model"] == "resnet18"
    opt = make_optimizer([{"name": "w", "params": [torch.nn.Parameter(torch.zeros(1))]}], cfg)
    assert opt.defaults["nesterov"] is False and opt.defaults["momentum"] == 0.9
    spec = parse_spec('[sweep]\nmetrics = ["accuracy", "ud"]\n[train]\nprotocol = "official-ud"\nepochs = 2\n'
                      "[attacks.lsp]\n[defenses.standard]\n[defenses.cutout]\n")
    cells = expand(spec)
    assert spec.models == ["resnet18"] and spec.sal == "exact" and all(dict(c.train)["sal"] == "exact" for c in cells)
    refs = sorted(c.defense for c in cells if c.reference)
    assert refs == ["cutout", "standard"]  # a clean reference per defense: UD against the same defense


# ------------------------------------------------------------------ names: changed defaults rename, unchanged ones do not

def test_changed_defaults_rename_poisons_and_cells_and_only_those():
    """Ids computed with the code before issue 18 (b24b5b6): attacks whose defaults changed get new names (their earlier
    parameters give the old ones back); the others, and cells whose computation did not change, keep theirs."""
    spec = ('[sweep]\nseeds = [0]\n[train]\nepochs = 2\n[attacks.hypo]\n[attacks.cuda]\n[attacks.region]\n[attacks.rem]\n'
            '[attacks.old-rem]\nattack = "rem"\nperturb_every = 10\n[attacks.ar]\n[attacks.old-ar]\nattack = "ar"\n'
            'coefficients = "random"\nrounding = "trunc"\n[attacks.clean]\n[defenses.at]\n[defenses.cutout]\n[defenses.iss-bdr]\n')
    cells = expand(parse_spec(spec))
    poisons = {c.attack: c.poison.id for c in cells if c.poison}
    assert poisons == {"hypo": "ed040bab3c4d09f9", "cuda": "8256786590c6e3f2", "region": "be28429ce719d60f",
                       "rem": poisons["rem"], "old-rem": "43c0b2f62c34b02d", "ar": poisons["ar"], "old-ar": "1f54a678ef92c719"}
    assert poisons["rem"] != "43c0b2f62c34b02d" and poisons["ar"] != "1f54a678ef92c719"
    clean = {c.defense: c.id for c in cells if c.attack == "clean"}
    assert clean["at"] == "47a1246b3d3553a5" and clean["cutout"] == "5d6283b660650077"
    assert clean["iss-bdr"] != "45da348c373031b0"  # posterize: a new computation, a new name


def test_fidelity_specs_plan_and_share_their_poisons():
    """The item-4 specs of docs/fidelity.md parse, and run into one database they make each poison once."""
    from pathlib import Path

    from pst_fast.sweep import load_spec

    specs = {p.stem: expand(load_spec(p)) for p in sorted((Path(__file__).parents[1] / "benchmarks" / "specs").glob("fidelity-*.toml"))}
    assert set(specs) == {"fidelity-poisons", "fidelity-iss", "fidelity-ud", "fidelity-ud-pair-fast", "fidelity-ud-pair-exact"}
    poisons = {name: {c.poison.id for c in cells if c.poison} for name, cells in specs.items()}
    assert len(poisons["fidelity-poisons"]) == 9 and poisons["fidelity-iss"] == poisons["fidelity-poisons"]
    assert poisons["fidelity-ud"] <= poisons["fidelity-poisons"] and poisons["fidelity-ud-pair-exact"] <= poisons["fidelity-ud"]
    standard0 = {c.id for c in specs["fidelity-poisons"] if c.seed == 0}
    assert standard0 <= {c.id for c in specs["fidelity-iss"]}  # the seed-0 standard cells are shared too
    assert {dict(c.train)["sal"] for c in specs["fidelity-ud-pair-exact"]} == {"exact"}
