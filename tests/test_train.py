"""Trainer: determinism, resume after kill -9, run-directory contents, bad input."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from pst_fast.data.format import write_dataset
from pst_fast.errors import PstFastError
from pst_fast.run import train
from pst_fast.training import Hooks, TrainConfig


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A 4-class 32x32 dataset (512 train / 128 test): class = a colour tint plus noise, learnable in 2 epochs."""
    root = tmp_path_factory.mktemp("synth")
    rng = np.random.default_rng(0)
    tints = rng.integers(40, 215, size=(4, 3))
    for split, n in (("train", 512), ("test", 128)):
        y = np.arange(n) % 4
        x = np.clip(tints[y][:, None, None, :] + rng.normal(0, 25, size=(n, 32, 32, 3)), 0, 255).astype(np.uint8)
        write_dataset(root / split, x, y.astype(np.int64), {"name": "synth", "split": split, "classes": ["a", "b", "c", "d"], "source": "test"})
    return root


def small(synth, **kw):
    base = dict(data=str(synth), model="fastnet", epochs=2, batch_size=32, eval_batch_size=128, quiet=True, warmup_epochs=0.5)
    return TrainConfig(**(base | kw))


def metric_lines(path):
    return [{k: v for k, v in json.loads(l).items() if k not in ("epoch_seconds", "images_per_second")}
            for l in (path / "metrics.jsonl").read_text().splitlines()]


def test_run_directory_and_summary(synth, tmp_path):
    s = train(small(synth, out=str(tmp_path / "run")))
    run = tmp_path / "run"
    for f in ("config.json", "metrics.jsonl", "checkpoint.pt", "model.pt", "curves.png", "summary.json"):
        assert (run / f).is_file(), f
    assert 0 <= s["final_test_acc"] <= s["peak_test_acc"] <= 1
    assert s["final_test_acc"] > 0.5  # the tints are easy: a broken loop stays at 0.25
    assert s["epochs"] == 2 and s["images_per_second"] > 0 and s["wall_seconds"] > 0
    assert json.loads((run / "summary.json").read_text())["final_test_acc"] == s["final_test_acc"]
    state = torch.load(run / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    again = train(small(synth, out=str(run)))  # a finished run is not recomputed
    assert again == json.loads((run / "summary.json").read_text())


def test_same_seed_same_metrics(synth, tmp_path):
    train(small(synth, out=str(tmp_path / "a")))
    train(small(synth, out=str(tmp_path / "b")))
    train(small(synth, out=str(tmp_path / "c"), seed=1))
    assert metric_lines(tmp_path / "a") == metric_lines(tmp_path / "b")
    assert metric_lines(tmp_path / "a") != metric_lines(tmp_path / "c")


def test_resume_after_kill_matches_uninterrupted(synth, tmp_path):
    args = ["--data", str(synth), "--model", "fastnet", "--epochs", "4", "--batch-size", "32", "--eval-batch-size", "128", "--quiet"]
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    subprocess.run([sys.executable, "-m", "pst_fast", "train", *args, "--out", str(ref)], check=True)
    proc = subprocess.Popen([sys.executable, "-m", "pst_fast", "train", *args, "--out", str(killed)])
    deadline = time.time() + 300
    while time.time() < deadline and not (killed / "metrics.jsonl").is_file():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "summary.json").exists(), "the run finished before it could be killed"
    done = len(metric_lines(killed))
    assert 1 <= done < 4
    subprocess.run([sys.executable, "-m", "pst_fast", "train", *args, "--out", str(killed)], check=True)
    assert metric_lines(killed) == metric_lines(ref)
    a = torch.load(ref / "model.pt", weights_only=True)
    b = torch.load(killed / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_hooks_are_called(synth):
    calls = {"step": 0, "epoch": 0, "loss": 0}

    def loss(model, x, y, state):
        calls["loss"] += 1
        state.logits = model(x)
        return torch.nn.functional.cross_entropy(state.logits, y)

    def on_epoch_end(state):
        calls["epoch"] += 1
        state.log["custom"] = 1.0

    hooks = Hooks(loss=loss, on_step=[lambda s: calls.__setitem__("step", calls["step"] + 1)], on_epoch_end=[on_epoch_end])
    s = train(small(synth, epochs=1), hooks=hooks)
    assert calls["step"] == calls["loss"] == 512 // 32 and calls["epoch"] == 1 and s["steps"] == 16


def test_max_steps_stops_early(synth):
    s = train(small(synth, epochs=5, max_steps=3))
    assert s["steps"] == 3 and s["epochs"] == 1


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(model="nonet"), "unknown model"),
        (dict(data="no-such-data"), "no such dataset"),
        (dict(epochs=0), "--epochs=0"),
        (dict(batch_size=-1), "--batch-size=-1"),
        (dict(defense="nothing"), "unknown defense"),
        (dict(schedule="weird"), "--schedule"),
    ],
)
def test_bad_options(synth, kw, match):
    with pytest.raises(PstFastError, match=match):
        train(small(synth, **kw))


def test_out_dir_with_a_different_run(synth, tmp_path):
    train(small(synth, epochs=1, out=str(tmp_path / "r")))
    with pytest.raises(PstFastError, match="holds a different run.*lr"):
        train(small(synth, epochs=1, lr=0.05, out=str(tmp_path / "r")))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(PstFastError, match="not a pst_fast run directory"):
        train(small(synth, epochs=1, out=str(tmp_path / "other")))


def test_init_checkpoint_with_other_class_count(synth, tmp_path):
    train(small(synth, epochs=1, out=str(tmp_path / "r")))
    ten = tmp_path / "ten"
    y = np.arange(64) % 10
    for split in ("train", "test"):
        write_dataset(ten / split, np.zeros((64, 32, 32, 3), np.uint8), y, {"name": "ten", "split": split, "classes": [str(i) for i in range(10)], "source": "test"})
    with pytest.raises(PstFastError, match="4 classes.*has 10"):
        train(small(synth, data=str(ten), init=str(tmp_path / "r" / "model.pt")))


def test_cli_errors_are_one_line(synth, tmp_path):
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-m", "pst_fast", "train", "--data", str(synth), "--model", "nonet"], capture_output=True, text=True, env=env)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "unknown model" in r.stderr
    r = subprocess.run([sys.executable, "-m", "pst_fast", "train", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--label-smoothing" in r.stdout and "(default: 0.2)" in r.stdout


@pytest.mark.parametrize("native, amp, warned", [(False, "on", True), (True, "on", False), (False, "off", False), (False, "auto", False)])
def test_amp_on_warns_once_where_the_cpu_emulates_bf16(monkeypatch, capsys, native, amp, warned):
    from pst_fast import device

    monkeypatch.setattr(device, "native_cpu_bf16", lambda: native)
    device._warn_emulated_bf16.cache_clear()
    assert [device.amp_enabled(amp, "cpu") for _ in range(2)] == [amp == "on"] * 2
    err = capsys.readouterr().err
    assert err.count("no native bf16") == warned and (not warned or "--amp off" in err and "\n" not in err.rstrip("\n"))
    device._warn_emulated_bf16.cache_clear()
