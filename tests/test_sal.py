"""SAL and UD: the fused bookkeeping ops against their reference, the batched engine against the straightforward
re-creation of the official loop, the trainer callback, SAL afterwards, UD's threshold and its refusals."""
import json
import os
import textwrap

import numpy as np
import pytest
import torch
from conftest import run_in_triton_interpreter, write_noise_dataset
from torch import nn

from pst_fast import data
from pst_fast.cli import main
from pst_fast.errors import PstFastError
from pst_fast.metrics.record import SALRecord
from pst_fast.metrics.sal import SALConfig, SALData, parse_sal_config, sal_epoch, sal_layers
from pst_fast.metrics.sal_reference import sal_epoch_reference
from pst_fast.metrics.ud import threshold, two_means_threshold, unlearnable_distance
from pst_fast.models import create_model
from pst_fast.models.blocks import BlockModel, Head, Residual, conv_bn
from pst_fast.ops.sal import sal_project_, sal_project_reference, sal_sharpness, sal_sharpness_reference
from pst_fast.run import measure_sal, train

ROWS = [(1, 1), (2, 27), (2, 432), (3, 4097), (4, 36864)]


def project_case(shape, seed):
    g = torch.Generator().manual_seed(seed)
    w0 = torch.randn(shape, generator=g)
    w = w0 + torch.randn(shape, generator=g) * torch.tensor([0.001, 0.2, 0.05, 0.0][: shape[0]] + [0.3] * max(0, shape[0] - 4))[:, None]
    return w, w0


@pytest.mark.parametrize("shape", ROWS)
@pytest.mark.parametrize("radius", [0.05, 0.5])
def test_project_cpu_equals_reference(shape, radius):
    w, w0 = project_case(shape, sum(shape))
    ref_w, fast_w = w.clone(), w.clone()
    r_ref = sal_project_reference(ref_w, w0, radius)
    r_fast = sal_project_(fast_w, w0, radius)
    torch.testing.assert_close(r_fast, r_ref, rtol=1e-6, atol=0)
    torch.testing.assert_close(fast_w, ref_w, rtol=1e-6, atol=1e-7)
    after = ((fast_w - w0).double().norm(dim=1) / w0.double().norm(dim=1)).float()
    assert torch.all(after <= radius * (1 + 1e-5)) and torch.equal(fast_w[r_ref <= radius], w[r_ref <= radius])


@pytest.mark.parametrize("R,V", [(1, 1), (3, 11), (10, 42), (7, 300)])
def test_sharpness_cpu_equals_reference(R, V):
    g = torch.Generator().manual_seed(R * V)
    l0, lmax, lmin = torch.rand(V, generator=g), torch.rand(R, V, generator=g) * 2, torch.rand(R, V, generator=g) * 2
    out = sal_sharpness(l0, lmax, lmin)
    assert torch.equal(out, sal_sharpness_reference(l0, lmax, lmin)) and torch.all(out >= 0)


def test_sal_ops_refuse_bad_input():
    with pytest.raises(PstFastError, match="float32"):
        sal_project_(torch.zeros(2, 3, dtype=torch.float64), torch.ones(2, 3, dtype=torch.float64), 0.05)
    with pytest.raises(PstFastError, match="radius"):
        sal_project_(torch.zeros(2, 3), torch.ones(2, 3), 0.0)
    with pytest.raises(PstFastError, match="does not match"):
        sal_sharpness(torch.zeros(3), torch.zeros(2, 4), torch.zeros(2, 4))


def triton_matches_reference(device, shapes):
    """The SAL kernels on ``device`` (CPU tensors under TRITON_INTERPRET=1, or CUDA) against the torch reference on the CPU."""
    for shape in shapes:
        w, w0 = project_case(shape, 1)
        a, b = w.to(device), w.clone()
        torch.testing.assert_close(sal_project_(a, w0.to(device), 0.05).cpu(), sal_project_reference(b, w0, 0.05), rtol=1e-5, atol=0)
        torch.testing.assert_close(a.cpu(), b, rtol=1e-5, atol=1e-6)
    l0, lmax, lmin = torch.rand(300), torch.rand(7, 300), torch.rand(7, 300)
    assert torch.equal(sal_sharpness(l0.to(device), lmax.to(device), lmin.to(device)).cpu(), sal_sharpness_reference(l0, lmax, lmin))


def test_sal_ops_triton_interpreter_equal_reference(tmp_path):
    run_in_triton_interpreter(textwrap.dedent("""
        import sys; sys.path.insert(0, {tests!r})
        from test_sal import ROWS, triton_matches_reference
        triton_matches_reference("cpu", ROWS[:4])
        print("TRITON_OK")
    """), os.path.dirname(__file__))


def tiny_resnet(num_classes=4):
    """A BlockModel with a strided conv shortcut inside a residual block and a conv after it in the same block."""
    torch.manual_seed(0)
    body = nn.Sequential(conv_bn(4, 6, stride=2), conv_bn(6, 6, act=False))
    return BlockModel([("stem", conv_bn(3, 4)), ("s1", nn.Sequential(Residual(body, conv_bn(4, 6, k=1, stride=2, act=False)), conv_bn(6, 6))),
                       ("head", Head(6, num_classes))])


@pytest.fixture(scope="module")
def noise(tmp_path_factory):
    return write_noise_dataset(tmp_path_factory.mktemp("noise"), 96, 32, patch=True)


def sal_data(root, batch_size=32, subset=0, seed=3):
    ds = data.load(str(root), "train")
    return SALData(ds, batch_size, 40, seed=seed, augment=True, subset=subset, norm=ds.norm)


def randomize_bn(model):
    g = torch.Generator().manual_seed(5)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


@pytest.mark.parametrize("make,lr,l0", [
    (lambda: create_model("fastnet", 4, widths=(4, 4, 8, 8)), 0.1, 1.2),
    (tiny_resnet, 0.1, None),
    (tiny_resnet, 3.0, 1.0),   # large steps: every layer hits the radius and is projected
])
def test_engine_equals_reference_loop(noise, make, lr, l0):
    torch.manual_seed(0)  # the ascent amplifies float32 rounding: a fixed model, not whatever the tests before left the RNG at
    model = randomize_bn(make())
    cfg = SALConfig(mode="exact", rounds=3, lr_min=lr, lr_max=lr)
    fast = sal_epoch(model, sal_data(noise), cfg, l0, label_smoothing=0.1)
    ref = sal_epoch_reference(model, sal_data(noise), cfg, l0, label_smoothing=0.1)
    assert fast.layers == ref.layers == sal_layers(model)
    for name in ("sal", "s_max", "s_min", "loss_max", "loss_min", "ratio_max", "ratio_min"):
        np.testing.assert_allclose(getattr(fast, name), getattr(ref, name), rtol=1e-5, atol=1e-5, err_msg=name)
    if lr > 1:
        assert np.all(fast.ratio_max.max(0) > cfg.radius)
    assert np.all(fast.sal >= 0) and fast.sal.max() > 0
    assert np.allclose(fast.sal, np.maximum(fast.s_max, fast.s_min))


def test_engine_leaves_model_unchanged_and_is_deterministic(noise):
    model = randomize_bn(tiny_resnet()).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = sal_epoch(model, sal_data(noise), SALConfig(mode="exact", rounds=2), 1.0)
    b = sal_epoch(model, sal_data(noise), SALConfig(mode="exact", rounds=2), 1.0)
    c = sal_epoch(model, sal_data(noise, seed=4), SALConfig(mode="exact", rounds=2), 1.0)
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert np.array_equal(a.sal, b.sal) and not np.array_equal(a.loss_max, c.loss_max)


def test_subset_is_class_balanced_and_fixed(noise):
    d = sal_data(noise, subset=40)
    labels = d._train.labels.numpy()
    assert d.num_images == 40 and np.bincount(labels).tolist() == [10, 10, 10, 10]
    assert np.array_equal(labels, sal_data(noise, subset=40)._train.labels.numpy())


def test_sal_config_modes_and_errors():
    fast, exact = parse_sal_config("fast"), parse_sal_config("exact")
    assert (exact.rounds, exact.subset, exact.every) == (10, 0, 1) and fast.subset > 0 and fast.rounds < 10
    assert parse_sal_config("fast", "rounds=5,subset=0").rounds == 5
    assert [e for e in range(10) if fast.measures(e, 10)] == [e for e in range(10) if (e + 1) % fast.every == 0 or e == 9]
    for bad, match in (("round=3", "--sal-args round: unknown key; expected one of"), ("rounds", "--sal-args 'rounds': expected key=value"),
                       ("rounds=x", "--sal-args rounds='x': expected an integer"),
                       ("data=val", "data='val'"), ("radius=0", "radius > 0")):
        with pytest.raises(PstFastError, match=match):
            parse_sal_config("fast", bad)


def tiny_run(root, out, **kw):
    base = dict(data=str(root), model="fastnet-small", epochs=2, batch_size=32, quiet=True, warmup_epochs=0.5, out=str(out),
                sal="exact", sal_args="rounds=2,subset=64")
    return train(**(base | kw))


def test_train_records_sal_and_offline_sal_reproduces_it(noise, tmp_path):
    tiny_run(noise, tmp_path / "run", keep_checkpoints=True)
    rec = SALRecord.load(tmp_path / "run")
    assert rec.epochs == [0, 1] and rec.matrix().shape == (2, len(rec.layers)) and rec.meta["poisoned"] is False
    assert (tmp_path / "run" / "sal.png").stat().st_size > 0
    lines = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert np.allclose(lines[1]["sal"], rec.matrix()[1], atol=1e-6)
    np.testing.assert_allclose(rec.matrix("l0"), [l["train_ce"] for l in lines], rtol=1e-6)  # SAL's loss is plain CE (issue 18)
    again = measure_sal(tmp_path / "run", parse_sal_config("exact", "rounds=2,subset=64"), out=tmp_path / "offline", quiet=True)
    for k in ("sal", "loss_max", "loss_min", "ratio_max"):
        assert np.array_equal(again.matrix(k), rec.matrix(k)), k


def test_killed_run_resumes_sal_record(noise, tmp_path, monkeypatch):
    from pst_fast.training.rundir import RunDir

    tiny_run(noise, tmp_path / "ref", sal_args="rounds=1,subset=32")
    save_epoch = RunDir.save_epoch

    def crash(self, line, checkpoint, keep=False):
        if line["epoch"] == 1:  # SAL of epoch 2 is saved, its checkpoint is not
            raise KeyboardInterrupt
        save_epoch(self, line, checkpoint, keep)

    monkeypatch.setattr(RunDir, "save_epoch", crash)
    with pytest.raises(KeyboardInterrupt):
        tiny_run(noise, tmp_path / "killed", sal_args="rounds=1,subset=32")
    assert SALRecord.load(tmp_path / "killed").epochs == [0, 1]
    monkeypatch.setattr(RunDir, "save_epoch", save_epoch)
    tiny_run(noise, tmp_path / "killed", sal_args="rounds=1,subset=32")
    a, b = SALRecord.load(tmp_path / "ref"), SALRecord.load(tmp_path / "killed")
    assert a.epochs == b.epochs == [0, 1] and np.array_equal(a.matrix(), b.matrix())


def test_train_refuses_bad_sal_options(noise, tmp_path):
    with pytest.raises(PstFastError, match="--sal-args 'rounds=2': given without --sal"):
        tiny_run(noise, tmp_path / "x", sal="", sal_args="rounds=2")
    with pytest.raises(PstFastError, match="--sal-args"):
        tiny_run(noise, tmp_path / "y", sal_args="every=-1")


def test_two_means_threshold_is_the_optimal_split():
    rng = np.random.default_rng(0)
    for _ in range(50):
        v = rng.exponential(size=rng.integers(2, 30))
        s = np.sort(v)
        costs = [((s[:i] - s[:i].mean()) ** 2).sum() + ((s[i:] - s[i:].mean()) ** 2).sum() for i in range(1, len(s))]
        i = int(np.argmin(costs)) + 1
        assert np.isclose(two_means_threshold(v), (s[:i].mean() + s[i:].mean()) / 2)
    assert two_means_threshold(np.array([0.1, 0.1, 0.1])) == 0.1
    assert threshold(np.array([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 2.0]])) == pytest.approx((0.5 + 1.0) / 2)


def fake_record(path, sal, poisoned=False, **meta):
    base = {"sal_config": {"mode": "fast"}, "model": "fastnet", "train_epochs": 3, "data": "d", "data_fingerprint": "f",
            "poisoned": poisoned, "seed": 0, "defense": "standard"}
    rec = SALRecord([f"l{i}.weight" for i in range(sal.shape[1])], base | meta)
    for e, row in enumerate(sal):
        rec.epochs.append(e)
        for k in ("l0", "seconds"):
            rec.arrays[k].append(np.float32(0))
        for k in ("sal", "s_max", "s_min"):
            rec.arrays[k].append(row.astype(np.float32))
        for k in ("loss_max", "loss_min", "ratio_max", "ratio_min"):
            rec.arrays[k].append(np.zeros((1, sal.shape[1]), np.float32))
    rec.save(path)
    return path


def test_ud_counts_layers_above_beta_and_cli_reports_it(tmp_path, capsys):
    clean = fake_record(tmp_path / "clean", np.array([[0.1, 0.1, 0.9, 0.9], [0.1, 0.2, 0.8, 1.0], [0.0, 0.1, 0.7, 0.9]]))
    other = fake_record(tmp_path / "clean2", np.array([[0.1, 0.6, 0.9, 0.9], [0.1, 0.2, 0.8, 1.0], [0.0, 0.1, 0.7, 0.9]]))
    poison = fake_record(tmp_path / "em", np.array([[0.1, 0.1, 0.1, 0.9], [0.1, 0.1, 0.1, 0.1], [0.0, 0.1, 0.1, 0.2]]), poisoned=True)
    rep = unlearnable_distance(clean, [other, poison])
    assert rep["clean"]["lambda"] == [2, 2, 2]
    assert [r["ud"] for r in rep["runs"]] == pytest.approx([7 / 6, 1 / 6])
    assert main(["ud", "--clean", str(clean), "--poisoned", str(other), str(poison), "--json", "--out", str(tmp_path / "ud")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["beta"] == pytest.approx(rep["beta"]) and [r["lp"] for r in out["runs"]] == pytest.approx([7 / 3, 1 / 3])
    assert (tmp_path / "ud" / "sal-heatmap.png").stat().st_size > 0 and (tmp_path / "ud" / "ud.png").stat().st_size > 0


@pytest.mark.parametrize("meta,match", [
    (dict(model="resnet18"), "model 'resnet18' differs"),
    (dict(train_epochs=5), "train_epochs 5 differs"),
    (dict(sal_config={"mode": "exact"}), "sal_config"),
])
def test_ud_refuses_mismatched_runs(tmp_path, capsys, meta, match):
    sal = np.array([[0.1, 0.9], [0.2, 0.8], [0.1, 0.9]])
    clean = fake_record(tmp_path / "clean", sal)
    other = fake_record(tmp_path / "other", sal, **meta)
    assert main(["ud", "--clean", str(clean), "--poisoned", str(other)]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1


def test_ud_refuses_poisoned_clean_run_other_layers_and_epochs(tmp_path):
    sal = np.array([[0.1, 0.9], [0.2, 0.8], [0.1, 0.9]])
    with pytest.raises(PstFastError, match="--clean .*: trained on a poisoned dataset"):
        unlearnable_distance(fake_record(tmp_path / "p", sal, poisoned=True), [fake_record(tmp_path / "q", sal)])
    clean = fake_record(tmp_path / "clean", sal)
    with pytest.raises(PstFastError, match="different layer sets"):
        unlearnable_distance(clean, [fake_record(tmp_path / "wide", np.hstack([sal, sal]))])
    with pytest.raises(PstFastError, match="same epochs"):
        unlearnable_distance(clean, [fake_record(tmp_path / "short", sal[:2])])
    with pytest.raises(PstFastError, match="no SAL record"):
        unlearnable_distance(tmp_path / "nowhere", [clean])


@pytest.mark.parametrize("name", ["vit-tiny"])
def test_engine_equals_reference_on_other_architectures(noise, name):
    """Attention blocks (their Linear weights feed scaled-dot-product attention) run under the engine."""
    torch.manual_seed(0)
    model = randomize_bn(create_model(name, 4))
    cfg = SALConfig(mode="exact", rounds=1)
    fast = sal_epoch(model, sal_data(noise, batch_size=8, subset=8), cfg, 1.0)
    ref = sal_epoch_reference(model, sal_data(noise, batch_size=8, subset=8), cfg, 1.0)
    assert fast.layers == ref.layers and len(fast.layers) > 20
    np.testing.assert_allclose(fast.loss_max, ref.loss_max, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fast.loss_min, ref.loss_min, rtol=1e-4, atol=1e-5)
