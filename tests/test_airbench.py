"""The airbench94 recipe's parts, each against what it must compute: the whitening stem, the identity-initialized
convolutions, the BatchNorm bias gain (= airbench's 64x bias learning rate), the triangle schedule, lookahead,
test-time augmentation and the preset."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from conftest import write_noise_dataset

from pst_fast.models import create_model
from pst_fast.models.airbench import BIAS_GAIN, UnitScaleBatchNorm, Whiten, identity_conv
from pst_fast.run import resolve
from pst_fast.training.config import TrainConfig
from pst_fast.training.hooks import TrainState
from pst_fast.training.lookahead import BASE, EVERY, POWER, Lookahead, frozen_state_keys
from pst_fast.training.loop import tta_logits
from pst_fast.training.optim import freeze_first_block_after, lr_factor


def test_whitening_filters_whiten_the_patches():
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(3, 3, generator=g)
    images = torch.einsum("dc,nchw->ndhw", mix, torch.randn(64, 3, 16, 16, generator=g)) + 0.3  # correlated channels
    w = Whiten(3, 2)
    w.fit(images)
    out = F.conv2d(images, w.weight)                         # without the bias: the whitened patches
    flat = out[:, :12].permute(0, 2, 3, 1).reshape(-1, 12)
    cov = flat.T @ flat / len(flat)
    eig = torch.linalg.eigvalsh(cov)
    assert torch.allclose(cov, torch.diag(torch.diagonal(cov)), atol=1e-3)  # decorrelated
    assert eig.min() > 0.9 and eig.max() < 1.0 + 1e-4                        # unit variance (up to WHITEN_EPS)
    assert torch.equal(w.weight[12:], -w.weight[:12])
    assert [n for n, _ in w.named_parameters()] == ["bias"]                    # the filters are never trained


def test_identity_init_and_bias_gain():
    conv = identity_conv(4, 6)
    x = torch.randn(2, 4, 5, 5)
    assert torch.allclose(conv(x)[:, :4], x)
    # SGD on the stored bias b/8 moves the effective bias like SGD on b with 64x the lr, with the same weight decay
    bn = UnitScaleBatchNorm(3)
    plain = torch.zeros(3, requires_grad=True)
    x = torch.randn(8, 3, 4, 4)
    target = torch.randn(8, 3, 4, 4)
    lr, wd = 0.01, 0.1
    opt_a = torch.optim.SGD([bn.scaled_bias], lr=lr, momentum=0.9, nesterov=True, weight_decay=wd)
    opt_b = torch.optim.SGD([plain], lr=lr * BIAS_GAIN ** 2, momentum=0.9, nesterov=True, weight_decay=wd / BIAS_GAIN ** 2)
    norm = torch.nn.BatchNorm2d(3, eps=1e-12, momentum=0.4, affine=False)
    for _ in range(3):
        for opt, out in ((opt_a, bn(x)), (opt_b, norm(x) + plain.view(1, -1, 1, 1))):
            opt.zero_grad()
            ((out - target) ** 2).mean().backward()
            opt.step()
        assert torch.allclose(BIAS_GAIN * bn.scaled_bias, plain, atol=1e-6)


def test_triangle_schedule():
    cfg = dataclasses.replace(TrainConfig(), schedule="triangle", warmup_epochs=2.0)
    factors = [lr_factor(cfg, s, 100, 10) for s in range(101)]
    assert factors[0] == pytest.approx(0.2) and factors[20] == pytest.approx(1.0) and factors[100] == pytest.approx(0.07)
    assert max(factors) == pytest.approx(1.0) and factors.index(max(factors)) == 20


def _state(model, step, total=40, per_epoch=5):
    return TrainState(model=model, optimizer=None, cfg=TrainConfig(), step=step, steps_per_epoch=per_epoch, total_steps=total)


def test_lookahead_blends_every_fifth_step_and_ends_on_the_ema():
    model = torch.nn.Linear(2, 1, bias=False)
    la = Lookahead()
    seen = {}  # step -> (weights before the hook, EMA before the hook, weights after)
    for step in range(1, 41):
        w_in, ema_in = model.weight.detach().clone(), None if la.ema is None else la.ema["weight"].clone()
        la(_state(model, step))
        seen[step] = (w_in, ema_in, model.weight.detach().clone())
        with torch.no_grad():
            model.weight.add_(1.0)  # the optimizer's step
    assert all(torch.equal(w_in, w_out) for s, (w_in, _, w_out) in seen.items() if s % EVERY)  # off-steps
    w_in, ema_in, w_out = seen[EVERY]
    assert ema_in is None and torch.equal(w_out, w_in)  # the EMA starts at the weights of the first blend step
    w_in, ema_in, w_out = seen[20]
    assert torch.allclose(w_out, ema_in.lerp(w_in, 1 - BASE ** EVERY * (20 / 40) ** POWER))
    assert torch.equal(seen[40][2], la.ema["weight"])  # the last step leaves the model at the EMA
    frozen = torch.nn.Linear(2, 1, bias=False)
    frozen.weight.requires_grad_(False)
    la = Lookahead()
    la(_state(frozen, 15))
    with torch.no_grad():
        frozen.weight.zero_()  # a rollback of a frozen block is kept, not blended away
    la(_state(frozen, 20))
    assert torch.equal(frozen.weight, torch.zeros_like(frozen.weight))
    block = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))  # a frozen block's BatchNorm statistics
    block.requires_grad_(False)
    assert frozen_state_keys(block) == {"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                                        "1.num_batches_tracked"}
    la = Lookahead()
    block[1].running_mean.fill_(5.0)
    la(_state(block, 15))
    block[1].reset_running_stats()  # a rollback to initialization
    la(_state(block, 20))
    assert torch.equal(block[1].running_mean, torch.zeros(2)) and torch.equal(block[1].running_var, torch.ones(2))


def test_the_stem_freezes_after_its_epochs_and_stays_frozen_on_resume(tmp_path):
    from pst_fast.run import train
    from pst_fast.training.freeze import FreezeAwareSGD

    data = write_noise_dataset(tmp_path / "noise", 64, 16)
    train(protocol="airbench94", data=str(data), batch_size=16, epochs=2, stem_epochs=1, keep_checkpoints=True, quiet=True,
          out=str(tmp_path / "run"))
    bias_1 = torch.load(tmp_path / "run" / "epochs" / "0000.pt", weights_only=True)["blocks.stem.0.bias"]
    assert bias_1.abs().sum() > 0                                            # trained in epoch 1
    final = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert torch.equal(final.get("model", final)["blocks.stem.0.bias"], bias_1)  # frozen through epoch 2
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)  # what a resumed run loads
    assert [g["name"] for g in ckpt["optimizer"]["param_groups"] if g.get("frozen")] == ["stem"]
    model = create_model("airbench")                                         # ... and its optimizer is frozen again
    opt = FreezeAwareSGD([{"params": [p], "name": n} for n, p in model.named_parameters()], lr=0.1)
    saved = FreezeAwareSGD([{"params": [p], "name": n} for n, p in model.named_parameters()], lr=0.1)
    saved.freeze("blocks.stem.0.bias")
    opt.load_state_dict(saved.state_dict())
    opt.sync_requires_grad()
    assert not model.blocks["stem"][0].bias.requires_grad
    state = TrainState(model=None, optimizer=torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), cfg=None, epoch=0)
    with pytest.raises(Exception, match="--stem-epochs 1: the optimizer SGD cannot freeze"):
        freeze_first_block_after(1)(state)


def test_tta_levels():
    model = create_model("airbench").eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        base, mirror = model(x), model(x.flip(-1))
        assert torch.equal(tta_logits(model, x, 0), base)
        assert torch.allclose(tta_logits(model, x, 1), 0.5 * (base + mirror))
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        views = [x, padded[..., :32, :32], padded[..., 2:, 2:]]
        mirrored = [0.5 * (model(v) + model(v.flip(-1))) for v in views]
        assert torch.allclose(tta_logits(model, x, 2), 0.5 * mirrored[0] + 0.25 * (mirrored[1] + mirrored[2]), atol=1e-6)


def test_preset_and_a_short_run(tmp_path):
    spec = resolve(protocol="airbench94", max_steps=2, epochs=1, tta=1, out=str(tmp_path / "run"), quiet=True)
    cfg = spec.cfg
    assert (cfg.model, cfg.batch_size, cfg.lr, cfg.momentum, cfg.schedule, cfg.lookahead, cfg.stem_epochs, cfg.crop_pad, cfg.pad_mode) == \
        ("airbench", 1024, 1.5, 0.85, "triangle", True, 3, 2, "reflect")
    assert cfg.tta == 1  # an explicit option overrides the preset's 2
    from pst_fast.run import train

    summary = train(protocol="airbench94", max_steps=2, epochs=1, tta=1, out=str(tmp_path / "run"), quiet=True)
    assert summary["steps"] == 2 and 0.0 <= summary["final_test_acc"] <= 1.0
    weights = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    stem = weights.get("model", weights)["blocks.stem.0.weight"]
    assert stem.abs().sum() > 0 and torch.equal(stem[12:], -stem[:12])  # whitened from the training images


def test_alternating_flips_invert_every_other_epoch():
    from pst_fast.data import open_splits
    from pst_fast.data.loader import DeviceLoader, alternating_flips

    f0, f1, f2 = (alternating_flips(1000, 3, e) for e in range(3))
    assert (f0 ^ f1).all() and (f0 == f2).all() and 400 < f0.sum() < 600
    assert not (f0 == alternating_flips(1000, 4, 0)).all()  # seeded
    train, _ = open_splits("cifar10-mini")
    small = train.subset(torch.arange(8).numpy())
    loader = DeviceLoader(small, 8, shuffle=False, seed=3, crop_pad=0, alternate_flip=True)
    (x0, _, _), = list(loader)
    (x1, _, _), = list(loader)
    plain = DeviceLoader(small, 8, shuffle=False, augment=False)
    (clean, _, _), = list(plain)
    flipped = torch.from_numpy(alternating_flips(8, 3, 0))
    for b in range(8):  # epoch 0 flips exactly the bits' images, epoch 1 exactly the others
        assert torch.equal(x0[b], clean[b].flip(-1) if flipped[b] else clean[b])
        assert torch.equal(x1[b], clean[b] if flipped[b] else clean[b].flip(-1))


def test_reflect_padded_translations_in_the_loader():
    """--pad-mode reflect: every training image is a 2-px translation of the image padded by reflection (F.pad), none
    shows the zero padding's constant border; the offsets vary."""
    import torch.nn.functional as F

    from pst_fast.data import open_splits
    from pst_fast.data.loader import DeviceLoader

    train, _ = open_splits("cifar10-mini")
    small = train.subset(torch.arange(16).numpy())
    (x, _, _), = list(DeviceLoader(small, 16, shuffle=False, seed=1, crop_pad=2, pad_mode="reflect", flip=False))
    (clean, _, _), = list(DeviceLoader(small, 16, shuffle=False, augment=False))
    padded = F.pad(clean, (2, 2, 2, 2), mode="reflect")
    offsets = set()
    for b in range(16):
        hits = [(dy, dx) for dy in range(5) for dx in range(5) if torch.equal(x[b], padded[b, :, dy:dy + 32, dx:dx + 32])]
        assert hits, b
        offsets.add(hits[0])
    assert len(offsets) > 3
    from pst_fast.errors import DataError

    with pytest.raises(DataError, match="--crop-pad 32 with --pad-mode reflect"):
        DeviceLoader(small, 16, crop_pad=32, pad_mode="reflect")


def test_alternating_flips_in_the_tree_loaders(image_tree):
    from pst_fast.data.folder import scan
    from pst_fast.data.folder_loader import folder_loader
    from pst_fast.data.loader import alternating_flips

    split = scan(image_tree(per_class=5) / "train")
    loader = folder_loader("fallback", split, batch_size=4, image_size=8, seed=2, alternate_flip=True)
    for epoch in range(3):
        assert (loader._views(epoch)[1] == alternating_flips(len(split), 2, epoch)).all()


def test_attack_surrogates_fit_the_whitening_from_their_data():
    from pst_fast.attacks.em import EMParams, Source, _surrogate
    from pst_fast.data import open_splits

    train, _ = open_splits("cifar10-mini")
    source = Source.of(train.subset(torch.arange(200).numpy()), "cpu")
    surrogate, _ = _surrogate(source, EMParams(model="airbench"), "cpu")
    model = surrogate.model
    x = source.norm.from01(source.clean(torch.arange(200)))
    fitted = create_model("airbench")
    fitted.data_init(x)
    assert torch.allclose(model.blocks["stem"][0].weight, fitted.blocks["stem"][0].weight)
    assert not torch.allclose(create_model("airbench").blocks["stem"][0].weight, fitted.blocks["stem"][0].weight)


def test_full_cifar_sweep_preset_plans():
    """benchmarks/specs/cifar10-full.toml: 5 training sets x 3 defenses, every cell trained by the airbench94 recipe, EM
    crafted with airbench as its surrogate."""
    from pathlib import Path

    from pst_fast.sweep import load_spec
    from pst_fast.sweep.plan import expand

    cells = expand(load_spec(Path(__file__).parents[1] / "benchmarks" / "specs" / "cifar10-full.toml"))
    assert len(cells) == 15 and {c.model for c in cells} == {"airbench"}
    assert {(dict(c.train)["schedule"], dict(c.train)["lookahead"], dict(c.train)["tta"]) for c in cells} == {("triangle", True, 2)}
    em = {c.poison for c in cells if c.attack == "em"}
    assert len(em) == 1 and dict(em.pop().params)["model"] == "airbench" and len({c.poison.id for c in cells if c.poison}) == 4
