"""Poisons crafted against a fixed, clean-trained surrogate: TAP and HYPO.

- **TAP** (Fowl et al., NeurIPS 2021, "Adversarial Examples Make Strong Poisons"): PGD on every training
  image toward class (y+1) mod K (``targeted``, the default; the loss to y+1 descends) or away from y
  (untargeted ascent); 250 signed steps of ε/10 with a multistep decay, differentiable crop+flip
  augmentation at each step, and ``restarts`` random starts of which each sample keeps the δ with the
  best final objective.
- **HYPO** (Tao et al., NeurIPS 2021, "Better Safe Than Sorry": hypocritical perturbations): PGD descent
  toward the true label against a briefly clean-trained surrogate (10 epochs), i.e. error-minimizing noise
  with the surrogate held fixed.

The surrogate is trained by pst_fast's own trainer on the clean training split (its defaults, with the
attack's ``surrogate_epochs`` and the batch capped at the split's size), or loaded from ``surrogate_init`` (a ``model.pt`` of an earlier run).
Its clean training accuracy and the attack's success rate are recorded in the poison's meta.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.format import ImageDataset
from ..errors import PstFastError
from ..options import opt
from ..models import create_model
from ..training import Hooks, train as train_model
from ..training.rundir import load_checkpoint
from .base import Poison, effective_delta, quantize
from .engine import PGD, Surrogate, accuracy_on, gather, perturb, surrogate_amp, surrogate_name


@dataclass
class HYPOParams:
    eps: float = opt(8 / 255, "L-inf budget")
    step_size: float = opt(0.8 / 255, "signed PGD step")
    steps: int = opt(100, "PGD descent steps (toward the true label)")
    augment: bool = opt(True, "differentiable crop+flip at every step")
    model: str = opt("auto", "surrogate; auto = resnet18 on CUDA, fastnet-small on CPU")
    surrogate_epochs: int = opt(10, "clean training of the surrogate by the trainer (a briefly trained one, as in the paper)")
    surrogate_init: str = opt("", "model.pt of an already trained clean surrogate (skips the training)")
    batch_size: int = opt(512, "images per PGD batch")
    compile: bool = opt(False, "torch.compile the frozen surrogate of the PGD sweeps")
    amp: str = surrogate_amp()


@dataclass
class TAPParams(HYPOParams):
    step_size: float = opt(0.8 / 255, "signed step (ε/10), decayed ×0.1 at 3/8, 5/8, 7/8 of the steps")
    steps: int = opt(250, "PGD steps (official 250)")
    surrogate_epochs: int = opt(15, "clean training of the surrogate by the trainer")
    restarts: int = opt(8, "random starts; each sample keeps its best")
    targeted: bool = opt(True, "toward (y+1) mod K; False = away from y")


def clean_surrogate(train: ImageDataset, p, seed: int, device, progress: bool) -> tuple[Surrogate, dict]:
    """A surrogate trained on the clean split by the trainer (or loaded from ``p.surrogate_init``)."""
    name = surrogate_name(p.model, device)
    if p.surrogate_init:
        if not Path(p.surrogate_init).is_file():
            raise PstFastError(f"--surrogate-init {p.surrogate_init}: no such file (expected model.pt of a clean run)")
        model = create_model(name, num_classes=train.num_classes)
        state = load_checkpoint(p.surrogate_init)
        try:
            model.load_state_dict(state.get("model", state))
        except RuntimeError as e:
            raise PstFastError(f"--surrogate-init {p.surrogate_init}: does not fit model {name} ({str(e).splitlines()[0][:120]})") from None
        info = {"surrogate": name, "surrogate_init": p.surrogate_init}
    else:
        if train.is_poisoned:
            raise PstFastError(f"--data {train.path.parent}: the surrogate must be trained on clean data, this split is a poison")
        trained = {}
        hooks = Hooks(on_epoch_end=[lambda s: trained.update(model=s.model)])
        summary = train_model(data=str(Path(train.path).parent), model=name, epochs=p.surrogate_epochs, seed=seed,
                              batch_size=min(128, len(train)),
                              device=str(device), amp=p.amp, quiet=not progress, hooks=hooks)
        model = trained["model"]
        info = {"surrogate": name, "surrogate_epochs": p.surrogate_epochs, "surrogate_test_acc": summary["final_test_acc"]}
    model = model.to(device, memory_format=torch.channels_last).eval()
    return Surrogate(model, train.meta["mean"], train.meta["std"], device, compile=p.compile, amp=p.amp), info


def craft(train: ImageDataset, p, pgd: PGD, seed: int, device, restarts: int, target_of, progress: bool, desc: str) -> Poison:
    """Sweep ``pgd`` over the resident training set against the fixed clean surrogate."""
    surrogate, info = clean_surrogate(train, p, seed, device, progress)
    frozen = surrogate.frozen()
    g = torch.Generator(device=device).manual_seed(seed)
    images = torch.from_numpy(np.array(train.images)).to(device)
    labels = torch.from_numpy(np.array(train.labels)).to(device)
    n, (h, w, c) = len(labels), train.shape
    delta = torch.zeros((n, c, h, w), device=device)
    starts = range(0, n, p.batch_size)
    for start in tqdm(starts, desc=desc, disable=not progress, unit="batch"):
        idx = torch.arange(start, min(start + p.batch_size, n), device=device)
        x, target = gather(images, idx), target_of(labels[idx])
        best, best_obj = None, None
        for _ in range(restarts):
            d = perturb(frozen, x, torch.zeros_like(x), target, pgd, g)
            with torch.no_grad():  # the objective being minimized: -direction * CE(target), per sample, no augmentation
                obj = -pgd.direction * F.cross_entropy(frozen((x + d).clamp(0, 1)), target, reduction="none")
            if best is None:
                best, best_obj = d, obj
            else:
                better = obj < best_obj
                best[better], best_obj = d[better], torch.minimum(obj, best_obj)
        delta[idx] = best
    clean = np.asarray(train.images)
    poisoned = quantize(clean, delta.permute(0, 2, 3, 1).cpu().numpy())
    published = torch.from_numpy(poisoned).to(device)
    hit = accuracy_on(frozen, published, target_of(labels), lambda idx: 0.0)
    info["success_rate"] = hit if pgd.direction < 0 else 1.0 - hit
    info["surrogate_acc_on_poison"] = accuracy_on(frozen, published, labels, lambda idx: 0.0)
    return Poison(poisoned, effective_delta(clean, poisoned), info)


def tap(train: ImageDataset, p: TAPParams, seed: int, device="cpu", progress=True) -> Poison:
    k = train.num_classes
    pgd = PGD(steps=p.steps, step_size=p.step_size, eps=p.eps, direction=-1 if p.targeted else 1,
              random_start=True, schedule="multistep", augment=p.augment)
    target_of = (lambda y: (y + 1) % k) if p.targeted else (lambda y: y)
    return craft(train, p, pgd, seed, device, max(1, p.restarts), target_of, progress, "tap")


def hypo(train: ImageDataset, p: HYPOParams, seed: int, device="cpu", progress=True) -> Poison:
    pgd = PGD(steps=p.steps, step_size=p.step_size, eps=p.eps, direction=-1, augment=p.augment)
    return craft(train, p, pgd, seed, device, 1, lambda y: y, progress, "hypo")
