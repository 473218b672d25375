"""The batched PGD engine (below both the attacks, which craft poisons with it, and the defenses, which train
against it): perturbations for the whole dataset stay resident on the device.

Batches are gathered by index from the uint8 dataset (no host round-trips, no per-sample Python);
only the input gradient is computed (``torch.autograd.grad`` w.r.t. δ prunes every weight-gradient
kernel, and no ``requires_grad`` flag is ever flipped, so a compiled surrogate stays valid); the update
is the fused :func:`pst_fast.ops.pgd_step_`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .data.normalization import Normalization
from .data.rows import gather
from .device import amp_enabled
from .models.fold import fold_batchnorm
from .ops.pgd import pgd_step_
from .options import opt


@dataclass
class PGD:
    """One PGD attack: ``steps`` updates of size ``step_size`` inside the ``norm`` ball of radius ``eps``.

    direction -1 descends the loss (error-minimizing, or targeted toward ``target``), +1 ascends it
    (error-maximizing / adversarial). ``random_start`` draws δ uniformly in the L∞ ball first.
    ``schedule`` 'multistep' multiplies the step by 0.1 at 3/8, 5/8 and 7/8 of the steps.
    ``augment`` passes every draw through a random crop (pad 4) + flip, and ``eot`` averages the input
    gradient over that many draws (expectation over transforms). ``early_exit`` stops updating a sample
    once the surrogate classifies it as wanted (as ``target`` for descent, not as it for ascent).
    """

    steps: int
    step_size: float
    eps: float
    norm: str = "linf"
    direction: int = -1
    random_start: bool = False
    schedule: str = "constant"
    augment: bool = False
    eot: int = 1
    early_exit: bool = False

    def step_at(self, i: int) -> float:
        if self.schedule == "constant":
            return self.step_size
        return self.step_size * 0.1 ** sum(i >= self.steps * f for f in (3 / 8, 5 / 8, 7 / 8))


class Surrogate:
    """A model that takes images in [0, 1]: the dataset's normalization ``norm`` is applied here.

    ``frozen()`` gives the fixed-weight view every PGD sweep and accuracy pass uses: BatchNorm folded into
    the convs (eval mode, no parameter gradients), compiled once when ``compile=True`` (later calls only
    copy the new weights in, so the compiled graph is reused). ``amp`` (on, off, auto: on for CUDA): the forward
    (and so its backward) runs under bf16 autocast; logits come back as float32.
    """

    def __init__(self, model: torch.nn.Module, norm: Normalization, device, channels_last: bool = True, compile: bool = False,
                 amp: str = "off"):
        self.model, self.norm, self.amp = model, norm, amp_enabled(amp, device)
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.compile = compile
        self._folded: torch.nn.Module | None = None
        self._view: Surrogate | None = None

    def __call__(self, x01: torch.Tensor) -> torch.Tensor:
        x = self.norm.from01(x01, self.fmt)
        if not self.amp:
            return self.model(x)
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return self.model(x).float()

    def frozen(self) -> "Surrogate":
        folded = fold_batchnorm(self.model)
        if self._folded is None:
            self._folded = folded
            view = Surrogate(torch.compile(folded) if self.compile else folded, self.norm, "cpu")
            view.fmt, view.amp = self.fmt, self.amp
            self._view = view
        else:
            with torch.no_grad():
                for dst, src in zip(self._folded.state_dict().values(), folded.state_dict().values()):
                    dst.copy_(src)
        return self._view


def surrogate_amp():
    """The ``amp`` parameter of the attacks that train or query a surrogate (a later field: see :func:`pst_fast.options.identity`)."""
    return opt("auto", "bf16 autocast of the surrogate, training and PGD: on, off, or auto (on for CUDA only)", ("auto", "on", "off"),
               later=True)


def surrogate_name(name: str, device) -> str:
    """``auto`` resolves to the papers' resnet18 on CUDA and to fastnet-small (~14 MFLOPs/image) on CPU."""
    if name != "auto":
        return name
    return "resnet18" if torch.device(device).type == "cuda" else "fastnet-small"


def cycle_batches(n: int, batch_size: int, generator: torch.Generator, device):
    """Endless (batch_size,) index batches: a seeded permutation, redrawn when fewer than a batch remain."""
    order, cursor = torch.randperm(n, generator=generator, device=device), 0
    while True:
        if cursor + batch_size > n:
            order, cursor = torch.randperm(n, generator=generator, device=device), 0
        yield order[cursor : cursor + batch_size]
        cursor += batch_size


def random_crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator | None) -> torch.Tensor:
    """Differentiable random crop (zero padding) + horizontal flip of a float batch, for EOT."""
    B, _, H, W = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (B,), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (B,), generator=generator, device=x.device)
    flip = torch.randint(0, 2, (B,), generator=generator, device=x.device).bool()
    rows = (dy[:, None] + torch.arange(H, device=x.device))[:, None, :, None]
    cols = torch.arange(W, device=x.device)
    cols = torch.where(flip[:, None], W - 1 - cols, cols) + dx[:, None]
    return xp.gather(2, rows.expand(B, x.shape[1], H, xp.shape[3])).gather(3, cols[:, None, None, :].expand(B, x.shape[1], H, W))


def input_gradient(surrogate: Surrogate, x: torch.Tensor, delta: torch.Tensor, target: torch.Tensor, pgd: PGD,
                   generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(d loss / d δ averaged over ``pgd.eot`` draws, logits of the last draw); no parameter gradients are computed."""
    d = delta.detach().requires_grad_(True)
    grad = torch.zeros_like(delta)
    for _ in range(pgd.eot):
        xin = x + d
        if pgd.augment:
            xin = random_crop_flip(xin, 4, generator)
        logits = surrogate(xin)
        loss = F.cross_entropy(logits, target)
        grad += torch.autograd.grad(loss, d)[0]
    return grad / pgd.eot, logits.detach()


def perturb(surrogate: Surrogate, x: torch.Tensor, delta: torch.Tensor, target: torch.Tensor, pgd: PGD,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Run ``pgd.steps`` fused updates on ``delta`` (B, C, H, W) in place and return it.

    ``target`` is the label the loss is computed against (true labels, or the target class of a
    targeted attack, which then descends). Pass a ``frozen()`` surrogate (eval mode, fixed weights).
    With ``pgd.random_start`` the incoming ``delta`` is replaced by a uniform draw in the ball.
    """
    if pgd.random_start:
        u = torch.rand(delta.shape, generator=generator, device=delta.device, dtype=delta.dtype)
        delta.copy_(((u * 2 - 1) * pgd.eps + x).clamp_(0, 1) - x)
    active = None
    for i in range(pgd.steps):
        grad, logits = input_gradient(surrogate, x, delta, target, pgd, generator)
        if pgd.early_exit:
            hit = logits.argmax(1) == target
            active = ~hit if pgd.direction < 0 else hit
            if not bool(active.any()):
                break
        pgd_step_(delta, x, grad, pgd.step_at(i), pgd.eps, pgd.norm, pgd.direction, active=active)
    return delta


@torch.no_grad()
def accuracy_on(surrogate: Surrogate, images, labels: torch.Tensor, delta_of, batch_size: int = 1000) -> float:
    """Accuracy of ``surrogate`` (pass a ``frozen()`` view) on clamp(x + δ, 0, 1) over a dataset, no augmentation.

    ``images``: the resident uint8 (N, H, W, C) tensor, or ``clean(idx)`` returning the float [0, 1] (B, C, H, W) batch
    of rows ``idx``; ``delta_of(idx)`` returns the (B, C, H, W) perturbation of rows ``idx``.
    """
    clean = images if callable(images) else functools.partial(gather, images)
    correct = 0
    for start in range(0, len(labels), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(labels)), device=labels.device)
        x = (clean(idx) + delta_of(idx)).clamp_(0, 1)
        correct += int((surrogate(x).argmax(1) == labels[idx]).sum())
    return correct / len(labels)
