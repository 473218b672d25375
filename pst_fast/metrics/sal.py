"""SAL — per-layer sharpness-aware learnability (Ye, Su, Qian, ICLR 2025), as the official code computes it.

Layers: the weight of every Conv2d and Linear. For layer l with current weight W⁰ (model in eval mode,
only W_l moves): a descending and an ascending copy; for k = 1..R rounds, one SGD pass (lr_min / lr_max,
no momentum or decay) over the SAL data descending / ascending the loss, then if ‖W − W⁰‖_F > ε‖W⁰‖_F the
displacement is rescaled onto that sphere, then both copies' mean loss is measured on one more pass.
S_max = max(L₀, max_k L(W⁺_k)) − L₀, S_min = L₀ − min(L₀, min_k L(W⁻_k)), SAL_l = max(S_max, S_min).
The loss is plain cross-entropy, as the official code's (``loss=train``: the run's training loss with its label
smoothing, pst_fast's earlier choice); L₀ defaults to the epoch's logged mean training loss of that same loss, as
in the official code, which re-measures it in eval mode for mixup and cutmix (whose logged loss is mixed).

Data passes are seeded draws of the run's own training loader (shuffle + augmentation): train pass k and
eval pass k are shared by every layer and both directions (the official code draws a fresh shuffle per
copy; the math is the same, the random draws differ).

Engine: each (layer, direction) variant differs from the base model in one tensor. Per batch the base
model runs once (no grad) up to every block; for a layer in block b the ± pair runs block b under
``torch.func.vmap`` over its stacked (2, *shape) weight (one convolution with 2·C_out filters on the
shared input), then the deeper blocks on the stacked 2B batch. The backward reaches that weight only.
"""
from __future__ import annotations

import dataclasses
import functools
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import data
from ..errors import PstFastError
from ..models.fold import fold_batchnorm
from ..ops.sal import sal_project_, sal_sharpness
from ..options import opt
from ..training.inputs import reading

MODE_DEFAULTS = {"exact": dict(rounds=10, subset=0, every=1), "fast": dict(rounds=2, subset=1024, every=1)}


@dataclass
class SALConfig:
    mode: str = opt("fast", "exact: the definition on every image, round and epoch; fast: the knobs below at their fast defaults", ("fast", "exact"))
    rounds: int = opt(0, "rounds (SGD pass, projection, evaluation) per layer; 0 = mode default (exact 10, fast 2)")
    subset: int = opt(-1, "images in the SAL data: a fixed seeded class-balanced subset; 0 = all; -1 = mode default (exact all, fast 1024)")
    every: int = opt(0, "measure every k-th epoch (epochs k, 2k, … counted from 1; the last always); 0 = mode default (exact 1, fast 1)")
    radius: float = opt(0.05, "relative radius: the moving weight stays within radius·‖W⁰‖_F of W⁰")
    lr_min: float = opt(0.1, "SGD learning rate of the descending copy")
    lr_max: float = opt(0.1, "SGD learning rate of the ascending copy")
    data: str = opt("train", "SAL data: the run's training set with its augmentation (official), or the clean test set", ("train", "test"))
    l0: str = opt("train-log", "reference loss: the epoch's logged mean training loss (official) or a fresh eval-mode pass (a deviation)", ("train-log", "measure"))
    loss: str = opt("ce", "the loss SAL measures: ce = plain cross-entropy (official); train = the run's training loss with its "
                    "label smoothing (pst_fast's earlier default; not official)", ("ce", "train"), later=True, earlier="train")
    batch_size: int = opt(0, "SGD batch size of the SAL passes; 0 = the run's training batch size (official)")
    eval_batch_size: int = opt(500, "batch size of the evaluation passes (does not change the result)")

    def resolved(self) -> "SALConfig":
        """A copy with the mode defaults filled in and every value checked."""
        if self.mode not in MODE_DEFAULTS:
            raise PstFastError(f"--sal {self.mode!r}: expected fast or exact")
        d = MODE_DEFAULTS[self.mode]
        out = dataclasses.replace(self, rounds=self.rounds or d["rounds"], subset=d["subset"] if self.subset < 0 else self.subset,
                                  every=self.every or d["every"])
        for name in ("rounds", "every"):
            if getattr(out, name) < 1:
                raise PstFastError(f"--sal-args {name}={getattr(out, name)}: expected a positive integer")
        if not (out.radius > 0 and out.lr_min >= 0 and out.lr_max >= 0 and out.batch_size >= 0 and out.eval_batch_size > 0):
            raise PstFastError("--sal-args: expected radius > 0, lr_min/lr_max >= 0, batch_size >= 0, eval_batch_size > 0")
        for name in ("data", "l0", "loss"):
            choices = dataclasses.fields(self)[[f.name for f in dataclasses.fields(self)].index(name)].metadata["choices"]
            if getattr(out, name) not in choices:
                raise PstFastError(f"--sal-args {name}={getattr(out, name)!r}: expected one of {', '.join(choices)}")
        return out

    def measures(self, epoch: int, epochs: int) -> bool:
        """Whether SAL is measured after ``epoch`` (0-based) of an ``epochs``-epoch run."""
        return (epoch + 1) % self.every == 0 or epoch == epochs - 1


def sal_layers(model: nn.Module) -> list[str]:
    """Names of the weights SAL measures: every Conv2d and Linear weight, in module order."""
    return [f"{name}.weight" for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def class_balanced_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of ``n`` images, as equal a share per class as possible, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    take, k = [], 0
    while len(take) < n:
        take.extend(p[k] for p in per if k < len(p))
        k += 1
    return np.sort(np.asarray(take[:n], dtype=np.int64))


class SALData:
    """The passes over the SAL data: ``train_pass(k)`` (SGD batches, last partial batch dropped, as the
    official loader) and ``eval_pass(k)`` (every image once); each a fresh seeded shuffle and augmentation.

    Batches come from the split's loader (:func:`pst_fast.data.batch_loader`, ``loader_kw``: reading, norm, layout, device)
    without random resized crops: an ImageFolder split is read with its evaluation view (centre crop, no flip) whatever
    ``augment`` says, only the order is drawn.
    """

    def __init__(self, dataset: data.Split, batch_size: int, eval_batch_size: int, seed: int, augment: bool, subset: int = 0,
                 **loader_kw):
        if subset and subset < len(dataset):
            dataset = dataset.subset(class_balanced_subset(np.asarray(dataset.labels), subset, seed))
        if batch_size > len(dataset):
            raise PstFastError(f"SAL batch size {batch_size} is larger than its data ({len(dataset)} images)")
        self.num_images = len(dataset)
        make = functools.partial(data.batch_loader, dataset, augment=augment, resized_crops=False)
        self._train = make(batch_size=batch_size, shuffle=True, drop_last=True, seed=2 * seed, **loader_kw)
        self._eval = make(batch_size=eval_batch_size, shuffle=True, drop_last=False, seed=2 * seed + 1, **loader_kw)

    def train_pass(self, k: int):
        self._train.set_epoch(k)
        return iter(self._train)

    def eval_pass(self, k: int):
        self._eval.set_epoch(k)
        return iter(self._eval)


def make_sal_data(scfg: SALConfig, tcfg, train_ds: data.Split, test_ds: data.Split, epoch: int, layout: str = "nchw",
                  device="cpu") -> SALData:
    """The SAL data of epoch ``epoch`` of a run with training config ``tcfg`` (seeded by its seed and the epoch), read and
    normalized as the run's training split."""
    on_train = scfg.data == "train"
    return SALData(train_ds if on_train else test_ds, scfg.batch_size or tcfg.batch_size, scfg.eval_batch_size,
                   seed=tcfg.seed * 100_003 + epoch, augment=on_train, subset=scfg.subset, reading=reading(tcfg).at(train_ds),
                   norm=train_ds.norm, layout=layout, device=device)


@dataclass
class SALResult:
    """One epoch's SAL: ``sal``, ``s_max``, ``s_min`` (L,); ``loss_max``/``loss_min`` (R, L) eval losses of the
    ascending/descending copies after each round; ``ratio_max``/``ratio_min`` (R, L) ‖W − W⁰‖/‖W⁰‖ before each projection."""

    layers: list[str]
    l0: float
    sal: np.ndarray
    s_max: np.ndarray
    s_min: np.ndarray
    loss_max: np.ndarray
    loss_min: np.ndarray
    ratio_max: np.ndarray
    ratio_min: np.ndarray
    seconds: float


def finish_result(layers, l0, loss_min, loss_max, ratio_min, ratio_max, t0) -> SALResult:
    """Reduce the per-round losses (R, L) of the descending/ascending copies into a :class:`SALResult`."""
    lmax, lmin = torch.as_tensor(loss_max, dtype=torch.float32), torch.as_tensor(loss_min, dtype=torch.float32)
    ref = torch.full((len(layers),), float(l0))
    sal = sal_sharpness(ref, lmax, lmin)
    s_max = torch.maximum(ref, lmax.max(0).values) - ref
    s_min = ref - torch.minimum(ref, lmin.min(0).values)
    return SALResult(list(layers), float(l0), sal.numpy(), s_max.numpy(), s_min.numpy(), lmax.numpy(), lmin.numpy(),
                     np.asarray(ratio_max, dtype=np.float32), np.asarray(ratio_min, dtype=np.float32), time.perf_counter() - t0)


MIXED_LABEL_DEFENSES = ("mixup", "cutmix")  # their logged training loss is a mixed-label loss


def reference_loss(scfg: SALConfig, tcfg, log: dict) -> tuple[float | None, float]:
    """(L₀, label smoothing of the SAL loss) for the epoch whose metrics line is ``log``; L₀ None = measure it fresh.

    loss=ce: L₀ is the logged plain cross-entropy of the training logits (``train_ce``; ``train_loss`` when the run
    trains without smoothing), measured in eval mode for the mixed-label defenses, as the official code does."""
    if scfg.loss == "train":
        return (log["train_loss"] if scfg.l0 == "train-log" else None), tcfg.label_smoothing
    if scfg.l0 == "measure" or tcfg.defense in MIXED_LABEL_DEFENSES:
        return None, 0.0
    if "train_ce" in log:
        return log["train_ce"], 0.0
    if tcfg.label_smoothing == 0 and tcfg.defense == "standard":
        return log["train_loss"], 0.0
    raise PstFastError(f"epoch {log.get('epoch', 0) + 1}: no plain cross-entropy logged (train_ce; a run from an earlier version); "
                       "measure SAL with --sal-args loss=train (the run's smoothed loss) or l0=measure")


def mean_loss(model: nn.Module, batches, label_smoothing: float) -> float:
    """Mean cross-entropy of ``model`` (as it is) over ``batches``."""
    total, n = 0.0, 0
    with torch.no_grad():
        for x, y, _ in batches:
            total += F.cross_entropy(model(x).float(), y, reduction="sum", label_smoothing=label_smoothing).item()
            n += len(y)
    return total / n


def _bn_scale(model: nn.Module, weight_name: str, w: torch.Tensor) -> torch.Tensor:
    """The factor (C_out, 1, …) that folding multiplies a conv weight by: γ/√(var + eps) of the BatchNorm right
    after it in its Sequential (as :func:`fold_batchnorm` computes it), or 1 when none follows."""
    path = weight_name.rsplit(".", 1)[0].split(".")
    parent = model.get_submodule(".".join(path[:-1]))
    i = int(path[-1]) if path[-1].isdigit() else -1
    nxt = parent[i + 1] if isinstance(parent, nn.Sequential) and 0 <= i < len(parent) - 1 else None
    if isinstance(nxt, nn.BatchNorm2d) and nxt.track_running_stats and isinstance(model.get_submodule(".".join(path)), nn.Conv2d):
        gamma = nxt.weight if nxt.weight is not None else torch.ones_like(nxt.running_var)
        return (gamma * torch.rsqrt(nxt.running_var + nxt.eps)).detach().reshape(-1, *[1] * (w.dim() - 1))
    return torch.ones((), dtype=w.dtype, device=w.device)


class _PairedVariants:
    """The ± copies of every measured layer of ``model`` (left unchanged) as stacked (2, *shape) leaf weights (row 0 descends).

    The base model runs with eval-mode BatchNorm folded into its convolutions (one biased conv, exact up to
    rounding); a variant's raw weight W enters its folded conv as W·s, s the per-channel scale of its BN.
    """

    def __init__(self, model: nn.Module, layers: list[str]):
        self.model = fold_batchnorm(model)
        self.blocks = list(self.model.blocks.values())
        names = self.model.block_names
        params = dict(model.named_parameters())
        self.where, self.w, self.w0, self.scale = [], [], [], []
        for name in layers:
            _, block, inner = name.split(".", 2)
            w0 = params[name].detach()
            self.where.append((names.index(block), inner))
            self.scale.append(_bn_scale(model, name, w0))
            self.w.append(w0.expand(2, *w0.shape).clone(memory_format=torch.contiguous_format).requires_grad_(True))
            self.w0.append(w0.reshape(1, -1).expand(2, -1).contiguous())

    def prefix(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Inputs of every block under the base weights (no grad): entry b feeds block b."""
        feats = [x]
        with torch.no_grad():
            for block in self.blocks[:-1]:
                feats.append(block(feats[-1]))
        return feats

    def layer_loss(self, i: int, feats: list[torch.Tensor], y: torch.Tensor, label_smoothing: float) -> torch.Tensor:
        """(2,) mean cross-entropy of layer i's descending and ascending copies on one batch."""
        b, inner = self.where[i]
        block = self.blocks[b]
        scale = self.scale[i]
        with warnings.catch_warnings():  # attention has no vmap batching rule yet: a correct per-variant loop, said once per call
            warnings.filterwarnings("ignore", message="There is a performance drop")
            h = torch.func.vmap(lambda w: torch.func.functional_call(block, {inner: w * scale}, (feats[b],)))(self.w[i])
        logits = self.model.forward_from(h.flatten(0, 1), b + 1)
        ce = F.cross_entropy(logits.float(), y.repeat(2), reduction="none", label_smoothing=label_smoothing)
        return ce.view(2, -1).mean(1)


def sal_epoch(model: nn.Module, data: SALData, scfg: SALConfig, l0: float | None, label_smoothing: float = 0.0,
              layers: list[str] | None = None, progress=None) -> SALResult:
    """SAL of every layer of ``model`` (a BlockModel; left unchanged) on ``data``; ``l0`` None = measure it fresh."""
    t0 = time.perf_counter()
    scfg = scfg.resolved()
    layers = layers or sal_layers(model)
    var = _PairedVariants(model, layers)
    if l0 is None:
        l0 = mean_loss(var.model, data.eval_pass(scfg.rounds), label_smoothing)
    L, R = len(layers), scfg.rounds
    lr = [torch.tensor([scfg.lr_min, -scfg.lr_max], dtype=w.dtype, device=w.device).view(2, *[1] * (w.dim() - 1)) for w in var.w]
    loss_min, loss_max, ratio_min, ratio_max = (np.zeros((R, L)) for _ in range(4))
    for k in range(R):
        for x, y, _ in data.train_pass(k):
            feats = var.prefix(x)
            for i, w in enumerate(var.w):
                var.layer_loss(i, feats, y, label_smoothing).sum().backward()  # row 1's step uses -lr: ascent
                with torch.no_grad():
                    w.sub_(lr[i] * w.grad)
                w.grad = None
        for i, w in enumerate(var.w):
            ratio_min[k, i], ratio_max[k, i] = sal_project_(w.detach().view(2, -1), var.w0[i], scfg.radius).tolist()
        sums, n = None, 0  # (L, 2) float64 on the device: no host sync per batch
        with torch.no_grad():
            for x, y, _ in data.eval_pass(k):
                feats = var.prefix(x)
                batch = torch.stack([var.layer_loss(i, feats, y, label_smoothing) for i in range(L)]).double() * len(y)
                sums = batch if sums is None else sums + batch
                n += len(y)
        loss_min[k], loss_max[k] = (sums[:, 0] / n).cpu().numpy(), (sums[:, 1] / n).cpu().numpy()
        if progress is not None:
            progress(k + 1, R)
    return finish_result(layers, l0, loss_min, loss_max, ratio_min, ratio_max, t0)


def parse_sal_config(mode: str, args: str = "") -> SALConfig:
    """``--sal MODE --sal-args 'key=value,…'`` -> a resolved :class:`SALConfig`."""
    from ..options import parse_kv_args

    return dataclasses.replace(parse_kv_args(args, SALConfig, "--sal-args"), mode=mode or "fast").resolved()
