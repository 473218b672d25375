"""Poisons crafted against a fixed, clean-trained surrogate: TAP and HYPO.

- **TAP** (Fowl et al., NeurIPS 2021, "Adversarial Examples Make Strong Poisons"): PGD on every training
  image toward class (y+1) mod K (``targeted``, the default; the loss to y+1 descends) or away from y
  (untargeted ascent) against a surrogate trained 40 epochs with plain cross-entropy; as the official PGD
  recipe (``--attackoptim PGD``): 250 signed steps of the constant size ε·τ = 0.4/255 (its step decay
  belongs to the Adam-type optimizers only), differentiable crop+flip augmentation at each step, and
  ``restarts`` = 8 random starts, each crafting the whole set, of which the one with the lowest mean
  target loss is kept for every image (``restart_select="set"``). ``restart_select="sample"`` (each image
  keeps its own best restart, a stronger attack) and ``schedule="multistep"`` are pst_fast's earlier
  variants, not official.
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

from ..data.format import ImageDataset, effective_delta, quantize
from ..errors import PstFastError
from ..models import create_model
from ..options import opt
from ..pgd import PGD, Surrogate, accuracy_on, gather, perturb, surrogate_amp, surrogate_name
from ..run import train as train_model
from ..training import Hooks
from ..training.rundir import load_checkpoint
from .base import Poison


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
    surrogate_label_smoothing: float = opt(0.2, "label smoothing of the surrogate's clean training (the trainer's default)",
                                           later=True)


@dataclass
class TAPParams(HYPOParams):
    step_size: float = opt(0.4 / 255, "signed step (official PGD recipe: ε·τ = 8/255 × 0.05, constant)")
    steps: int = opt(250, "PGD steps (official 250)")
    schedule: str = opt("constant", "step schedule: constant (official PGD) or multistep (×0.1 at 3/8, 5/8, 7/8 of the steps; "
                        "the official one for its Adam-type optimizers only; not official here)", ("constant", "multistep"),
                        later=True, earlier="multistep")
    surrogate_epochs: int = opt(40, "clean training of the surrogate by the trainer (official ConservativeStrategy: 40)")
    surrogate_label_smoothing: float = opt(0.0, "label smoothing of the surrogate's clean training (official: plain cross-entropy)",
                                           later=True, earlier=0.2)
    restarts: int = opt(8, "random starts, each crafting the whole set (official 8)")
    restart_select: str = opt("set", "set: keep the restart with the lowest mean target loss for every image (official); "
                              "sample: each image keeps its best restart (stronger; not official)", ("set", "sample"),
                              later=True, earlier="sample")
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
                              batch_size=min(128, len(train)), label_smoothing=p.surrogate_label_smoothing,
                              device=str(device), amp=p.amp, quiet=not progress, hooks=hooks)
        model = trained["model"]
        info = {"surrogate": name, "surrogate_epochs": p.surrogate_epochs, "surrogate_label_smoothing": p.surrogate_label_smoothing,
                "surrogate_test_acc": summary["final_test_acc"]}
    model = model.to(device, memory_format=torch.channels_last).eval()
    return Surrogate(model, train.norm, device, compile=p.compile, amp=p.amp), info


def craft(train: ImageDataset, p, pgd: PGD, seed: int, device, restarts: int, target_of, progress: bool, desc: str,
          select: str = "sample") -> Poison:
    """Sweep ``pgd`` over the resident training set against the fixed clean surrogate, ``restarts`` times: ``select``
    'set' keeps the restart with the lowest mean objective over the set, 'sample' each image's best restart."""
    if select not in ("set", "sample"):
        raise PstFastError(f"--restart-select {select!r}: expected set or sample")
    surrogate, info = clean_surrogate(train, p, seed, device, progress)
    frozen = surrogate.frozen()
    g = torch.Generator(device=device).manual_seed(seed)
    images = torch.from_numpy(np.array(train.images)).to(device)
    labels = torch.from_numpy(np.array(train.labels)).to(device)
    n, (h, w, c) = len(labels), train.shape
    batches = [torch.arange(start, min(start + p.batch_size, n), device=device) for start in range(0, n, p.batch_size)]

    def attempt(idx):
        """One restart on rows ``idx``: (δ, the objective being minimized per sample: -direction · CE(target), no augmentation)."""
        x, target = gather(images, idx), target_of(labels[idx])
        d = perturb(frozen, x, torch.zeros_like(x), target, pgd, g)
        with torch.no_grad():
            return d, -pgd.direction * F.cross_entropy(frozen((x + d).clamp(0, 1)), target, reduction="none")

    bar = tqdm(total=restarts * len(batches), desc=desc, disable=not progress, unit="batch")
    if select == "sample":
        delta = torch.zeros((n, c, h, w), device=device)
        for idx in batches:
            best, best_obj = attempt(idx)
            for _ in range(restarts - 1):
                d, obj = attempt(idx)
                better = obj < best_obj
                best[better], best_obj = d[better], torch.minimum(obj, best_obj)
            delta[idx] = best
            bar.update(restarts)
    else:  # as the official _forge: every restart crafts the whole set; the lowest mean objective wins
        delta, scores = None, []
        for _ in range(restarts):
            trial, total = torch.zeros((n, c, h, w), device=device), 0.0
            for idx in batches:
                trial[idx], obj = attempt(idx)
                total += float(obj.sum())
                bar.update(1)
            scores.append(total / n)
            if delta is None or scores[-1] < min(scores[:-1]):
                delta = trial
        info["restart_scores"], info["restart_kept"] = scores, int(np.argmin(scores))
    bar.close()
    clean = np.asarray(train.images)
    poisoned = quantize(clean, delta.permute(0, 2, 3, 1).cpu().numpy())
    published = torch.from_numpy(poisoned).to(device)
    hit = accuracy_on(frozen, published, target_of(labels), lambda idx: 0.0)
    info["success_rate"] = hit if pgd.direction < 0 else 1.0 - hit
    info["surrogate_acc_on_poison"] = accuracy_on(frozen, published, labels, lambda idx: 0.0)
    return Poison(poisoned, effective_delta(clean, poisoned), info)


def tap(train: ImageDataset, p: TAPParams, seed: int, device="cpu", progress=True) -> Poison:
    k = train.num_classes
    if p.schedule not in ("constant", "multistep"):
        raise PstFastError(f"--schedule {p.schedule!r}: expected constant or multistep")
    pgd = PGD(steps=p.steps, step_size=p.step_size, eps=p.eps, direction=-1 if p.targeted else 1,
              random_start=True, schedule=p.schedule, augment=p.augment)
    target_of = (lambda y: (y + 1) % k) if p.targeted else (lambda y: y)
    return craft(train, p, pgd, seed, device, max(1, p.restarts), target_of, progress, "tap", p.restart_select)


def hypo(train: ImageDataset, p: HYPOParams, seed: int, device="cpu", progress=True) -> Poison:
    pgd = PGD(steps=p.steps, step_size=p.step_size, eps=p.eps, direction=-1, augment=p.augment)
    return craft(train, p, pgd, seed, device, 1, lambda y: y, progress, "hypo")
