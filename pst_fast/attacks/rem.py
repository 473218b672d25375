"""Robust error-minimizing noise (Fu et al., ICLR 2022, "Robust Unlearnable Examples"), the official min-min-max.

The surrogate is adversarially trained on the poisoned data: every step takes a batch, applies the
training augmentation (crop+flip) to clamp(x + δ), finds the worst case within radius ρ (``adv_eps``)
by PGD ascent, and takes an SGD step on it. Every ``perturb_every`` steps (official: every step, its
``--perturb-freq 1``) the δ of the current batch is re-optimized from a fresh random start to *minimize*
the loss at that worst case, averaged over ``samples`` augmentation draws (EOT):

    δ ← Π_ε(δ − α · sign Σ_s ∂/∂δ CE(f(A_s(x+δ) + η*_s), y)),   η*_s = argmax_{‖η‖∞ ≤ ρ} CE(f(A_s(x+δ) + η), y)

(the gradient reaches δ through A_s with η* held fixed, as the official code does). After training,
δ is regenerated for the whole dataset with the final surrogate.

Cost: every δ step costs ``samples × (adv_steps + 1)`` forward+backward passes, so an official training
step costs 11 + 10 × 5 × 11 = 561 batch passes (``perturb_every=10``, pst_fast's cheaper variant and its
earlier default, not official: 11 + 55 on average), and the final sweep 550 passes per image — hours on a
GPU. docs/attacks.md gives the measured cost per step and the CPU budgets used on this machine.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.format import ImageDataset, effective_delta, quantize
from ..errors import PstFastError
from ..models import create_model
from ..ops.pgd import pgd_step_
from ..options import opt
from ..pgd import PGD, Surrogate, accuracy_on, cycle_batches, gather, perturb, random_crop_flip, surrogate_amp, surrogate_name
from .base import Poison


@dataclass
class REMParams:
    eps: float = opt(8 / 255, "δ radius (official --pgd-radius 8)")
    step_size: float = opt(1.6 / 255, "δ step (official 1.6)")
    steps: int = opt(10, "δ PGD steps per update (official 10)")
    adv_eps: float = opt(4 / 255, "ρ: radius of the adversarial training δ must survive (official 4)")
    adv_step_size: float = opt(0.8 / 255, "signed step of the inner ascent (official 0.8)")
    adv_steps: int = opt(10, "inner ascent steps (official 10)")
    samples: int = opt(5, "EOT augmentation draws per δ step (official --samp-num 5)")
    train_steps: int = opt(5000, "surrogate adversarial-training steps (official 5000)")
    perturb_every: int = opt(1, "re-optimize the current batch's δ every k training steps (official --perturb-freq 1; "
                             "10 = pst_fast's earlier default, ~8.5x less work per step, not official)")
    lr: float = opt(0.1, "surrogate SGD learning rate (momentum 0.9, weight decay 5e-4)")
    lr_decay_every: int = opt(2000, "surrogate steps between ×0.1 learning-rate decays (official 2000)")
    batch_size: int = opt(128, "images per PGD batch")
    model: str = opt("auto", "auto = resnet18 on CUDA, fastnet-small on CPU")
    compile: bool = opt(False, "torch.compile the frozen surrogate of the PGD sweeps")
    amp: str = surrogate_amp()


def robust_min(frozen: Surrogate, x: torch.Tensor, y: torch.Tensor, p: REMParams, g: torch.Generator) -> torch.Tensor:
    """δ (B, C, H, W) minimizing the EOT-averaged loss at the ρ-worst case, from a fresh uniform start."""
    delta = ((torch.rand(x.shape, generator=g, device=x.device) * 2 - 1) * p.eps + x).clamp_(0, 1) - x
    attack = PGD(steps=p.adv_steps, step_size=p.adv_step_size, eps=p.adv_eps, direction=1, random_start=True)
    for _ in range(p.steps):
        grad = torch.zeros_like(delta)
        for _ in range(p.samples):
            d = delta.detach().requires_grad_(True)
            shown = random_crop_flip((x + d).clamp(0, 1), 4, g)
            base = shown.detach()
            adv = base + perturb(frozen, base, torch.zeros_like(base), y, attack, g)
            adv.requires_grad_(True)
            g_adv = torch.autograd.grad(F.cross_entropy(frozen(adv), y), adv)[0]
            grad += torch.autograd.grad((shown * g_adv).sum(), d)[0]
        pgd_step_(delta, x, grad, p.step_size, p.eps, "linf", -1)
    return delta


def rem(train: ImageDataset, p: REMParams, seed: int, device="cpu", progress=True) -> Poison:
    if p.perturb_every < 1:
        raise PstFastError(f"--perturb-every {p.perturb_every}: expected a positive number of training steps")
    torch.manual_seed(seed)
    g = torch.Generator(device=device).manual_seed(seed)
    images = torch.from_numpy(np.array(train.images)).to(device)
    labels = torch.from_numpy(np.array(train.labels)).to(device)
    n, (h, w, c) = len(labels), train.shape
    name = surrogate_name(p.model, device)
    model = create_model(name, num_classes=train.num_classes).to(device, memory_format=torch.channels_last)
    model.init_from(n, lambda idx: train.norm.from01(images[torch.from_numpy(idx).to(device)].permute(0, 3, 1, 2).float() / 255))
    opt = torch.optim.SGD(model.parameters(), lr=p.lr, momentum=0.9, weight_decay=5e-4)
    surrogate = Surrogate(model, train.norm, device, compile=p.compile, amp=p.amp)
    attack = PGD(steps=p.adv_steps, step_size=p.adv_step_size, eps=p.adv_eps, direction=1, random_start=True)
    delta = torch.zeros((n, c, h, w), device=device)
    batches = cycle_batches(n, p.batch_size, g, device)
    correct = seen = 0
    bar = tqdm(range(p.train_steps), desc="rem: train", disable=not progress, unit="step")
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = p.lr * 0.1 ** (step // p.lr_decay_every)
        idx = next(batches)
        x, y = gather(images, idx), labels[idx]
        frozen = surrogate.frozen()
        if (step + 1) % p.perturb_every == 0:
            delta[idx] = robust_min(frozen, x, y, p, g)
        shown = random_crop_flip((x + delta[idx]).clamp(0, 1), 4, g)
        adv = shown + perturb(frozen, shown, torch.zeros_like(shown), y, attack, g)
        model.train()
        logits = surrogate(adv)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        correct, seen = correct + int((logits.argmax(1) == y).sum()), seen + len(y)
        if step % 50 == 49:
            bar.set_postfix(robust_acc=f"{correct / seen:.3f}")
            correct = seen = 0
    frozen = surrogate.frozen()
    for start in tqdm(range(0, n, p.batch_size), desc="rem: final sweep", disable=not progress, unit="batch"):
        idx = torch.arange(start, min(start + p.batch_size, n), device=device)
        delta[idx] = robust_min(frozen, gather(images, idx), labels[idx], p, g)
    clean = np.asarray(train.images)
    poisoned = quantize(clean, delta.permute(0, 2, 3, 1).cpu().numpy())
    acc = accuracy_on(frozen, torch.from_numpy(poisoned).to(device), labels, lambda idx: 0.0)
    info = {"surrogate": name, "surrogate_acc_on_poison": acc}
    return Poison(poisoned, effective_delta(clean, poisoned), info)
