"""The scripts in examples/ run, and do what they say."""
import math
import runpy
import subprocess
import sys
from pathlib import Path

import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SMALL = ["--width", "8", "--batch", "8", "--steps", "4", "--freeze-at", "2", "--pgd-steps", "3"]


def test_freeze_aware_resnet_in_process():
    """FreezeAwareSGD on a torchvision-style ResNet: layer1 frozen exactly, the rest trains; pgd_step noise in the L∞ ball."""
    main = runpy.run_path(str(EXAMPLES / "freeze_aware_resnet.py"), run_name="example")["main"]
    r = main(SMALL)
    model, opt, eps = r["model"], r["optimizer"], r["args"].eps
    assert [g["name"] for g in opt.param_groups] == ["stem", "layer1", "layer2", "layer3", "layer4", "fc"]
    assert opt.frozen == ["layer1"]
    for before, p in zip(r["layer1_at_freeze"], model.layer1.parameters()):
        assert torch.equal(before, p) and p.grad is None and not p.requires_grad
    assert all(p.grad is not None for p in model.layer2.parameters()), "the unfrozen blocks still get gradients"
    assert all(math.isfinite(v) for v in r["losses"] + r["pgd_losses"]) and len(r["losses"]) == 4
    x, delta = r["x"], r["delta"]
    assert delta.abs().max() <= eps + 1e-6 and delta.abs().max() > eps / 2, "δ fills, and stays in, the L∞ ball"
    assert (x + delta).min() >= 0 and (x + delta).max() <= 1
    assert r["pgd_losses"][-1] < r["pgd_losses"][0], "error-minimizing noise lowers the loss"


def test_freeze_aware_resnet_as_a_script():
    r = subprocess.run([sys.executable, str(EXAMPLES / "freeze_aware_resnet.py"), *SMALL], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "step 2: froze layer1 (frozen groups: layer1)" in r.stdout and "pgd_step x3" in r.stdout
