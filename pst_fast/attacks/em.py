"""Error-minimizing noise (Huang et al., ICLR 2021, "Unlearnable Examples"), sample-wise and class-wise.

The official min-min loop: repeat { M surrogate SGD steps on x+δ (train mode, no augmentation); a
PGD-descent sweep over the training set (eval mode; BatchNorm folded into the convs) } until the
surrogate's accuracy on the poisoned training set (eval mode, no augmentation) reaches ``stop_acc``.
As the official code: δ starts at 0 (``delta_init``; its ``--random_start`` is off), and the surrogate's
gradient norm is clipped to 5.0 on its training steps (``grad_clip``, its ``trainer.py``). Class-wise δ (one
per class) is updated per batch to the mean of its samples' PGD results, clamped to the ball, as the official
universal-perturbation loop does, with the official class-wise settings: one PGD step per batch, the sweep
and the stop-condition accuracy on a fixed seeded 20% subset of the training set (``sweep_portion``), and the
stop at 99% (its scripts' ``--universal_stop_error 0.01``; its README says 0.1). ``max_rounds`` caps the loop
(the official one can run forever); hitting it is recorded in the poison's meta.

The loop (:func:`min_min`) reads clean batches from a :class:`Source`, made from any split by its rows
(:meth:`pst_fast.data.Split.rows`): the resident canonical split, or an ImageFolder split decoded with the evaluation
transform at the training resolution — once, into host memory, when it fits, else per batch —, whose sample-wise δ
stays in host memory as int8 levels (:class:`HostLevels`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data import Normalization, Split
from ..data.format import ImageDataset, effective_delta, quantize
from ..errors import PstFastError
from ..models import create_model
from ..options import opt
from ..pgd import PGD, Surrogate, accuracy_on, cycle_batches, perturb, surrogate_amp, surrogate_name
from .base import Poison


@dataclass
class EMParams:
    eps: float = opt(8 / 255, "L-inf budget")
    step_size: float = opt(0.8 / 255, "PGD step (official 0.8/255)")
    steps: int = opt(20, "PGD steps per batch in each sweep (official 20)")
    train_steps: int = opt(10, "M: surrogate SGD steps between sweeps (official 10)")
    stop_acc: float = opt(0.99, "stop when the surrogate fits the poisoned set this well (class-wise default 0.9)")
    max_rounds: int = opt(20, "cap on rounds; reaching it is reported")
    model: str = opt("auto", "surrogate; auto = resnet18 (official) on CUDA, fastnet-small on CPU")
    compile: bool = opt(False, "torch.compile the frozen surrogate of the sweeps")
    lr: float = opt(0.1, "surrogate SGD (momentum 0.9, weight decay 5e-4, as the official)")
    batch_size: int = opt(512, "images per PGD batch")
    amp: str = surrogate_amp()
    delta_init: str = opt("zero", "start of δ: zero (official) or uniform in the ε-ball (pst_fast's earlier default; not official)",
                          ("zero", "uniform"), later=True, earlier="uniform")
    grad_clip: float = opt(5.0, "clip the surrogate's gradient norm on its training steps (official 5.0); 0 = off (not official)",
                           later=True, earlier=0.0)


@dataclass
class EMClassParams(EMParams):
    steps: int = opt(1, "PGD steps per batch in each sweep (official class-wise 1)")
    stop_acc: float = opt(0.99, "stop when the surrogate fits the poisoned set this well (official scripts 0.99; README 0.9)")
    sweep_portion: float = opt(0.2, "fraction of the training set (a fixed seeded subset) swept and evaluated each round (official 0.2)")


@dataclass
class Source:
    """The clean training set the min-min loop reads: ``clean(idx)`` -> float (B, C, H, W) in [0, 1] on the device for
    (B,) int64 device rows ``idx``; ``labels`` (N,) int64 on the device; ``shape`` (C, H, W); ``norm`` of the surrogate's input;
    ``how`` its rows are read (for the poison's meta; '' when resident)."""

    clean: Callable
    labels: torch.Tensor
    num_classes: int
    shape: tuple
    norm: Normalization
    how: str = ""

    @classmethod
    def of(cls, split: Split, device, image_size: int = 0, progress: bool = False) -> "Source":
        """The rows of ``split`` (a tree's at ``image_size`` px) on ``device``, normalized for the surrogate as the split's batches."""
        rows = split.rows(device, image_size, progress)
        labels = torch.from_numpy(np.array(split.labels)).to(device)
        return cls(rows.clean, labels, split.num_classes, rows.shape, split.norm, rows.how)


class HostLevels:
    """Sample-wise δ kept in host memory as int8 pixel levels (N, H, W, C); rows travel as float [0, 1] units (B, C, H, W).

    A row is rounded to whole levels when written back (after its batch's PGD steps, which run in float).
    """

    def __init__(self, init: np.ndarray, device):
        self.levels, self.device = init, device

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor:
        rows = torch.from_numpy(self.levels[idx.cpu().numpy()]).to(self.device)
        return rows.permute(0, 3, 1, 2).float() / 255

    def __setitem__(self, idx: torch.Tensor, d: torch.Tensor) -> None:
        self.levels[idx.cpu().numpy()] = to_levels(d)


def to_levels(d: torch.Tensor) -> np.ndarray:
    """float δ (B, C, H, W) in [0, 1] units -> int8 pixel levels (B, H, W, C), rounded to the nearest level."""
    return (d * 255).round_().permute(0, 2, 3, 1).to(torch.int8).cpu().numpy()


def _surrogate(source: Source, p: EMParams, device) -> tuple[Surrogate, torch.optim.Optimizer]:
    model = create_model(surrogate_name(p.model, device), num_classes=source.num_classes).to(device, memory_format=torch.channels_last)
    model.init_from(len(source.labels), lambda idx: source.norm.from01(source.clean(torch.from_numpy(idx).to(device))))
    opt = torch.optim.SGD(model.parameters(), lr=p.lr, momentum=0.9, weight_decay=5e-4)
    return Surrogate(model, source.norm, device, compile=p.compile, amp=p.amp), opt


def min_min(source: Source, p: EMParams, seed: int, device="cpu", class_wise: bool = False, progress: bool = True,
            host: bool = False) -> tuple[torch.Tensor | HostLevels, dict]:
    """The EM loop over ``source``: (δ, info). δ is float (K|N, C, H, W) in [0, 1] units on the device, or with ``host``
    (sample-wise) a :class:`HostLevels` of int8 (N, H, W, C) levels, |δ| <= round(255 ε)."""
    torch.manual_seed(seed)
    g = torch.Generator(device=device).manual_seed(seed)
    labels, k, n, (c, h, w) = source.labels, source.num_classes, len(source.labels), source.shape
    surrogate, opt = _surrogate(source, p, device)
    uniform = p.delta_init == "uniform"
    if p.delta_init not in ("zero", "uniform"):
        raise PstFastError(f"--delta-init {p.delta_init!r}: expected zero or uniform")
    if host and not class_wise:  # drawn per block of rows: never the whole float δ at once
        delta = HostLevels(np.zeros((n, h, w, c), np.int8), device)
        for lo in range(0, n, p.batch_size) if uniform else ():
            rows = torch.arange(lo, min(lo + p.batch_size, n), device=device)
            delta[rows] = (torch.rand((len(rows), c, h, w), generator=g, device=device) * 2 - 1) * p.eps
    else:
        shape = (k if class_wise else n, c, h, w)
        delta = (torch.rand(shape, generator=g, device=device) * 2 - 1) * p.eps if uniform else torch.zeros(shape, device=device)
    delta_of = (lambda idx: delta[labels[idx]]) if class_wise else (lambda idx: delta[idx])
    pgd = PGD(steps=p.steps, step_size=p.step_size, eps=p.eps, direction=-1)
    portion = getattr(p, "sweep_portion", 1.0)
    if not 0 < portion <= 1:
        raise PstFastError(f"--sweep-portion {portion}: expected a fraction in (0, 1]")
    swept = torch.randperm(n, generator=g, device=device)[: max(1, round(portion * n))].sort().values if portion < 1 else torch.arange(n, device=device)
    batches = cycle_batches(n, p.batch_size, g, device)
    history = []
    bar = tqdm(range(p.max_rounds), desc=f"em{'-class' if class_wise else ''}", disable=not progress, unit="round")
    for rnd in bar:
        surrogate.model.train()
        for _ in range(p.train_steps):  # M steps on the poisoned data, cycling through a seeded order
            idx = next(batches)
            x = (source.clean(idx) + delta_of(idx)).clamp_(0, 1)
            loss = F.cross_entropy(surrogate(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if p.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(surrogate.model.parameters(), p.grad_clip)
            opt.step()
        frozen = surrogate.frozen()  # BN folded into the convs: the sweep's weights are fixed
        for start in range(0, len(swept), p.batch_size):  # the sweep, in dataset order as the official loop
            idx = swept[start : start + p.batch_size]
            d = delta_of(idx).clone()
            perturb(frozen, source.clean(idx), d, labels[idx], pgd)
            if class_wise:  # each class's δ becomes the mean of its samples' results, clamped to the ball
                y = labels[idx]
                sums = torch.zeros_like(delta).index_add_(0, y, d)
                counts = torch.bincount(y, minlength=k).view(-1, 1, 1, 1)
                seen = counts.view(-1) > 0
                delta[seen] = (sums[seen] / counts[seen]).clamp_(-p.eps, p.eps)
            else:
                delta[idx] = d
        acc = accuracy_on(frozen, lambda i: source.clean(swept[i]), labels[swept], lambda i: delta_of(swept[i]))
        history.append(acc)
        bar.set_postfix(acc=f"{acc:.3f}")
        if acc >= p.stop_acc:
            break
    info = {"surrogate": surrogate_name(p.model, device), "rounds": len(history), "surrogate_acc": history, "stopped": "stop_acc" if history[-1] >= p.stop_acc else "max_rounds"}
    return delta, info


def error_minimizing(train: ImageDataset, p: EMParams, seed: int, device="cpu", class_wise: bool = False, progress: bool = True) -> Poison:
    """Generate EM noise for the resident ``train``; returns published uint8 images and the effective int8 δ."""
    source = Source.of(train, device)
    delta, info = min_min(source, p, seed, device, class_wise, progress)
    clean = np.asarray(train.images)
    per_sample = (delta[source.labels] if class_wise else delta).permute(0, 2, 3, 1).cpu().numpy()
    poisoned = quantize(clean, per_sample)
    return Poison(poisoned, effective_delta(clean, poisoned), info)


def error_minimizing_tree(split: Split, image_size: int, p: EMParams, seed: int, device="cpu", class_wise: bool = False,
                          progress: bool = True) -> tuple[np.ndarray, dict]:
    """EM noise for an ImageFolder ``split`` read with the evaluation transform (centre crop resized to ``image_size``):
    (int8 δ (K|N, S, S, 3) in pixel levels, info). Images are decoded by Pillow threads, once when they fit the decode cache
    (:func:`pst_fast.data.rows.folder_rows`); sample-wise δ stays on the host."""
    source = Source.of(split, device, image_size, progress)
    delta, info = min_min(source, p, seed, device, class_wise, progress, host=True)
    info["decoded"] = source.how
    if class_wise:
        return to_levels(delta), info
    return delta.levels, info


def em(train, p: EMParams, seed, device="cpu", progress=True) -> Poison:
    return error_minimizing(train, p, seed, device, class_wise=False, progress=progress)


def em_class(train, p: EMClassParams, seed, device="cpu", progress=True) -> Poison:
    return error_minimizing(train, p, seed, device, class_wise=True, progress=progress)


def em_tree(split, image_size, p: EMParams, seed, device="cpu", progress=True) -> tuple[np.ndarray, dict]:
    return error_minimizing_tree(split, image_size, p, seed, device, class_wise=False, progress=progress)


def em_class_tree(split, image_size, p: EMClassParams, seed, device="cpu", progress=True) -> tuple[np.ndarray, dict]:
    return error_minimizing_tree(split, image_size, p, seed, device, class_wise=True, progress=progress)
