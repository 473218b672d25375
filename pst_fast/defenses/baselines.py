"""Baseline defenses: adversarial training, ISS, UEraser, cutout, mixup, cutmix.

Each ``name(cfg, params) -> Hooks`` gets its parameters typed (the dataclass below, shown by ``pst-fast defenses``,
parsed once where the run is assembled). Batch defenses see the loader's cropped, flipped, normalized batch; those that need
pixels in [0, 1] go through the batches' normalization ``state.norm`` and back. Their random draws come from a
generator seeded by (run seed, step), so a resumed run draws what an uninterrupted one would.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..options import opt
from ..pgd import PGD, perturb
from ..training.hooks import Hooks, TrainState
from . import transforms


@dataclass
class ATParams:
    eps: float = opt(8 / 255, "L-inf radius of the training-time attack (pixels in [0, 1])", gt=0)
    step_size: float = opt(2 / 255, "PGD step size", gt=0)
    steps: int = opt(10, "PGD steps per batch (Madry et al.: 10)", ge=1)


@dataclass
class JPEGParams:
    quality: int = opt(10, "JPEG quality (ISS: 10)", ge=1, le=95)


@dataclass
class BitDepthParams:
    bits: int = opt(2, "bits kept per channel (ISS: 2)", ge=1, le=7)
    method: str = opt("posterize", "posterize: keep the top bits, {0,64,128,192} at 2 bits (ISS's RandomPosterize); round: the "
                      "nearest of 2^bits levels over 0..255, {0,85,170,255} (pst_fast's earlier default; not ISS's)",
                      ("posterize", "round"), later=True, earlier="round")


@dataclass
class CutoutParams:
    size: int = opt(16, "side of the square cut out, pixels", ge=1)


@dataclass
class MixParams:
    alpha: float = opt(1.0, "Beta(alpha, alpha) distribution of the mixing weight", gt=0)


@dataclass
class UEraserParams:
    policy: str = opt("kornia", "TrivialAugment: kornia (UEraser's official K.auto.TrivialAugment(): rotate ±30°, shear ±0.3, "
                      "translate ±0.5 of the side, one op per batch) or wide (TrivialAugment-Wide ranges, one op per image; "
                      "pst_fast's earlier default; not official)", transforms.TRIVIAL_POLICIES, later=True, earlier="wide")


@dataclass
class UEraserMaxParams(UEraserParams):
    repeats: int = opt(5, "augmented draws per image; the loss is the per-image maximum over them", ge=1)
    max_epochs: float = opt(10.0, "epochs with the max-over-draws loss (then one draw, as UEraser-Lite)", gt=0)


def _generator(state: TrainState, device, salt: int) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(state.cfg.seed * 1_000_003 + state.step * 7 + salt)
    return g


def _to01(x: torch.Tensor, state: TrainState) -> torch.Tensor:
    return state.norm.to01(x)


def _from01(x01: torch.Tensor, like: torch.Tensor, state: TrainState) -> torch.Tensor:
    """``x01`` normalized, in the memory format of the batch ``like``."""
    return state.norm.from01(x01, torch.channels_last if like.dim() == 4 and not like.is_contiguous() else torch.contiguous_format)


def _ce(logits: torch.Tensor, y: torch.Tensor, state: TrainState, reduction: str = "mean") -> torch.Tensor:
    return F.cross_entropy(logits.float(), y, label_smoothing=state.cfg.label_smoothing, reduction=reduction)


def adversarial_training(cfg, p: ATParams) -> Hooks:
    """Adversarial training (Madry et al. 2018): PGD-10, L-inf 8/255, step 2/255, random start, on every batch."""
    pgd = PGD(steps=p.steps, step_size=p.step_size, eps=p.eps, direction=1, random_start=True)

    def loss(fwd, x, y, state):
        model = state.model
        x01 = _to01(x, state)
        model.eval()  # the attack sees fixed BatchNorm statistics; only the input gradient is computed
        delta = perturb(lambda z: model(_from01(z, x, state)), x01, torch.zeros_like(x01), y, pgd, _generator(state, x.device, 1))
        model.train()
        state.logits = fwd(_from01(x01 + delta, x, state))
        return _ce(state.logits, y, state)

    return Hooks(loss=loss)


def _iss(transform) -> Hooks:
    def prepare(ds):
        return dataclasses.replace(ds, images=transform(ds.images))

    return Hooks(prepare_train=prepare)


def iss_jpeg(cfg, p: JPEGParams) -> Hooks:
    """ISS (Liu et al. 2023): JPEG-compress every training image once (quality 10)."""
    return _iss(lambda images: transforms.jpeg(images, p.quality))


def iss_gray(cfg, p: None) -> Hooks:
    """ISS (Liu et al. 2023): grayscale every training image once."""
    return _iss(transforms.grayscale)


def iss_bdr(cfg, p: BitDepthParams) -> Hooks:
    """ISS (Liu et al. 2023): reduce every training image to 2 bits per channel once (posterize, as ISS)."""
    return _iss(lambda images: transforms.bit_depth(images, p.bits, p.method))


def augment_normalized(x: torch.Tensor, state: TrainState, augment, salt: int) -> torch.Tensor:
    """``augment(x01, g)`` applied to a normalized batch ``x`` (same layout back); g is seeded by (seed, step, salt)."""
    return _from01(augment(_to01(x, state), _generator(state, x.device, salt)), x, state)


def _augmented(augment, salt: int) -> Hooks:
    """Hooks training on ``augment(x01, g)`` of every batch."""

    def loss(fwd, x, y, state):
        state.logits = fwd(augment_normalized(x, state, augment, salt))
        return _ce(state.logits, y, state)

    return Hooks(loss=loss)


def ueraser_lite(cfg, p: UEraserParams) -> Hooks:
    """UEraser-Lite (Qin et al. 2023): plasma brightness/contrast, channel shuffle and TrivialAugment (kornia's), one draw per image."""
    return _augmented(lambda x01, g: transforms.ueraser(x01, g, p.policy), 2)


def ueraser_max(cfg, p: UEraserMaxParams) -> Hooks:
    """UEraser-Max (Qin et al. 2023): the loss of the worst of 5 UEraser draws per image for the first 10 epochs."""

    def loss(fwd, x, y, state):
        g = _generator(state, x.device, 3)
        x01 = _to01(x, state)
        if state.epoch < p.max_epochs and p.repeats > 1:
            # the gradient of max_k L_k is that of the worst draw: pick it without gradients, back-propagate once;
            # the picking passes run in train mode, so BatchNorm statistics see every draw (as in the official loop).
            # kornia policy: the official tiles the repeats into one batch, so one TrivialAugment op serves every draw
            if p.policy == "kornia":
                draws = transforms.ueraser(x01.repeat(p.repeats, 1, 1, 1), g, p.policy).view(p.repeats, *x01.shape)
            else:
                draws = torch.stack([transforms.ueraser(x01, g, p.policy) for _ in range(p.repeats)])
            with torch.no_grad():
                losses = torch.stack([_ce(fwd(_from01(d, x, state)), y, state, "none") for d in draws])
            x01 = draws[losses.argmax(0), torch.arange(len(y), device=x.device)]
        else:
            x01 = transforms.ueraser(x01, g, p.policy)
        state.logits = fwd(_from01(x01, x, state))
        return _ce(state.logits, y, state)

    return Hooks(loss=loss)


def cutout(cfg, p: CutoutParams) -> Hooks:
    """Cutout (DeVries & Taylor 2017): one 16x16 square per image set to the dataset mean."""

    def loss(fwd, x, y, state):
        state.logits = fwd(transforms.cutout(x, p.size, _generator(state, x.device, 4)))
        return _ce(state.logits, y, state)

    return Hooks(loss=loss)


def _mix(mode: str, salt: int):
    def build(cfg, p: MixParams) -> Hooks:

        def loss(fwd, x, y, state):
            xm, perm, lam = transforms.mix_pairs(x, p.alpha, mode, _generator(state, x.device, salt))
            state.logits = fwd(xm)
            return lam * _ce(state.logits, y, state) + (1 - lam) * _ce(state.logits, y[perm], state)

        return Hooks(loss=loss)

    return build


mixup = _mix("mixup", 5)
mixup.__doc__ = "Mixup (Zhang et al. 2018): convex combinations of image pairs and their labels, weight ~ Beta(1, 1)."
cutmix = _mix("cutmix", 6)
cutmix.__doc__ = "CutMix (Yun et al. 2019): a box of another image pasted in, labels mixed by area, ~ Beta(1, 1)."

BASELINES = {
    "at": (adversarial_training, ATParams),
    "iss-jpeg": (iss_jpeg, JPEGParams),
    "iss-gray": (iss_gray, None),
    "iss-bdr": (iss_bdr, BitDepthParams),
    "ueraser-lite": (ueraser_lite, UEraserParams),
    "ueraser-max": (ueraser_max, UEraserMaxParams),
    "cutout": (cutout, CutoutParams),
    "mixup": (mixup, MixParams),
    "cutmix": (cutmix, MixParams),
}
