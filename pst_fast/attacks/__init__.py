"""Unlearnable-example attacks, by name: ``poison(attack, data, out, **params)`` writes a poisoned dataset.

``out/train`` holds the poisoned training split (published uint8 images, δ when it fits int8, and the
attack's full config in meta.json); ``out/test`` is the clean test split, so ``pst-fast train --data out``
trains on the poison and evaluates on clean data.
"""
from __future__ import annotations

import dataclasses
import time

from .. import data
from ..errors import PstFastError
from ..io import check_out
from . import adversarial as _adv, em as _em, rem as _rem, synthetic as _syn
from .base import AttackSpec, Poison, params_from, save_poison
from .tree import MODEL_FREE, on_views

SURROGATE = "model=auto trains fastnet-small on CPU (the papers' resnet18 on CUDA); amp=auto is bf16 on CUDA"
FIDELITY = {
    "em": "defaults: official sample-wise settings (HanxunH/Unlearnable-Examples @f347155). Not official: " + SURROGATE
          + "; the max_rounds cap; delta_init=uniform, grad_clip=0",
    "em-class": "defaults: official class-wise settings, stop 0.99 as its scripts (README: 0.9) (HanxunH/Unlearnable-Examples "
                "@f347155). Not official: " + SURROGATE + "; the max_rounds cap; the 20% subset is not stratified; delta_init=uniform, grad_clip=0",
    "rem": "defaults: official (fshp971/robust-unlearnable-examples @adf2060, scripts/cifar10/gen_rem.sh). Not official: "
           "perturb_every > 1 (cheaper); " + SURROGATE,
    "tap": "defaults: official PGD recipe (lhfowl/adversarial_poisons @a1d58d8). Not official: schedule=multistep, "
           "restart_select=sample; the surrogate is trained by pst_fast's trainer (cosine schedule, not the official step "
           "decay); " + SURROGATE,
    "hypo": "schedule as the authors' code (TLMichael/Hypocritical-Perturbation: 100 steps of eps/10, augmented). Not official: "
            "the crafting model, a standard-trained surrogate (the authors' is adversarially trained, eps 2/255); " + SURROGATE,
    "lsp": "defaults: official (dayu11/Availability-Attacks-Create-Shortcuts @d27ab29). Not official: rounding=nearest|trunc",
    "ops": "defaults: official search (cychomatica/One-Pixel-Shotcut @fe440c1). Not official: score=channel-sum",
    "ar": "defaults: official (psandovalsegura/autoregressive-poisoning @bf350b0: its published coefficients, rounding to "
          "nearest). Not official: coefficients=random, rounding=floor|trunc",
    "cuda": "defaults: official (vinusankars/Convolution-based-Unlearnability @ff58b1c); only the random draws differ",
}
ATTACKS: dict[str, AttackSpec] = {
    s.name: dataclasses.replace(s, fidelity=FIDELITY.get(s.name, ""))
    for s in [
        AttackSpec("em", _em.em, _em.EMParams, "linf", "error-minimizing noise, sample-wise (min-min bilevel)", "Huang et al., ICLR 2021",
                   _em.em_tree),
        AttackSpec("em-class", _em.em_class, _em.EMClassParams, "linf", "error-minimizing noise, one δ per class", "Huang et al., ICLR 2021",
                   _em.em_class_tree),
        AttackSpec("rem", _rem.rem, _rem.REMParams, "linf", "robust error-minimizing noise (min-min-max vs adversarial training)", "Fu et al., ICLR 2022"),
        AttackSpec("tap", _adv.tap, _adv.TAPParams, "linf", "targeted adversarial poisoning toward (y+1) mod K vs a clean surrogate", "Fowl et al., NeurIPS 2021"),
        AttackSpec("hypo", _adv.hypo, _adv.HYPOParams, "linf", "hypocritical perturbations: PGD descent vs a fixed clean surrogate", "Tao et al., NeurIPS 2021"),
        AttackSpec("lsp", _syn.lsp, _syn.LSPParams, "l2", "linearly separable patches, L2 radius eps*sqrt(HWC)", "Yu et al., KDD 2022"),
        AttackSpec("ops", _syn.ops, _syn.OPSParams, "l0", "one-pixel shortcut: one pixel per class set to an extreme colour", "Wu et al., ICLR 2023"),
        AttackSpec("ar", _syn.ar, _syn.ARParams, "l2", "autoregressive per-class processes, L2 = eps per image", "Sandoval-Segura et al., NeurIPS 2022"),
        AttackSpec("cuda", _syn.cuda, _syn.CUDAParams, "none", "per-class random blur kernels (convolution-based)", "Sadasivan et al., CVPR 2023"),
        AttackSpec("random", _syn.random_noise, _syn.NoiseParams, "linf", "uniform noise per sample (baseline)", "baseline"),
        AttackSpec("random-class", _syn.random_class, _syn.NoiseParams, "linf", "uniform noise per class (baseline)", "baseline"),
        AttackSpec("region", _syn.region, _syn.RegionParams, "linf", "class-wise ±eps block patterns (baseline)", "baseline"),
    ]
}


def get_attack(name: str) -> AttackSpec:
    if name not in ATTACKS:
        raise PstFastError(f"unknown attack {name!r}: expected one of {', '.join(ATTACKS)}")
    return ATTACKS[name]


def poison(attack: str, data_name: str = "cifar10-mini", out: str | None = None, seed: int = 0, device: str = "cpu",
           progress: bool = True, image_size: int = 0, **params) -> dict:
    """Generate ``attack`` on the training split of ``data_name`` and write it to ``out``; returns a summary.

    For an ImageFolder tree (em, em-class, and the model-free attacks on its evaluation views: :mod:`.tree`) ``out`` is a
    poison directory (δ at ``image_size`` px, 0 = native) for ``train --data TREE --poison out``, not a dataset.
    """
    spec = get_attack(attack)
    p = params_from(spec, params)
    if out is None:
        raise PstFastError("poison: --out is required")
    from pathlib import Path

    if Path(out).exists():
        raise PstFastError(f"--out {out}: output directory exists (choose another or remove it)")
    check_out(out)
    tree_generate = spec.tree or (on_views(spec.name, spec.generate) if spec.name in MODEL_FREE else None)
    train = data.open_split(data_name, "train", needs_arrays="" if tree_generate else f"attack {spec.name}", progress=progress)
    if train.in_place:
        return _poison_tree(spec, p, tree_generate, train, data_name, out, seed, device, progress, image_size)
    if image_size:
        raise PstFastError(f"--image-size {image_size}: applies to ImageFolder trees, not to the canonical dataset {data_name}")
    test = data.open_split(data_name, "test")
    if train.images.dtype.name != "uint8":
        raise PstFastError(f"--data {data_name}: images must be uint8, got {train.images.dtype}")
    t0 = time.perf_counter()
    result: Poison = spec.generate(train, p, seed, device=device, progress=progress)
    seconds = time.perf_counter() - t0
    result.info["generation_seconds"] = seconds
    save_poison(out, spec, p, seed, train, test, result)
    return _summary(attack, out, seconds, p, result.info)


def _summary(attack: str, out, seconds: float, p, info: dict) -> dict:
    """What :func:`poison` returns: the attack, its output, wall seconds, parameters and the generation's headline facts."""
    return {"attack": attack, "out": str(out), "seconds": seconds, "params": dataclasses.asdict(p),
            **{k: v for k, v in info.items() if k in ("rounds", "stopped", "success_rate")}}


def _poison_tree(spec: AttackSpec, p, generate, split: data.Split, tree: str, out: str, seed: int, device: str, progress: bool,
                 image_size: int) -> dict:
    """``generate`` (``spec``'s generator for trees) on the training ``split`` of the ImageFolder ``tree`` at ``image_size`` px
    (0: native), written as a poison directory."""
    from ..data.folder_poison import write_folder_poison

    size = data.Reading(image_size=image_size).at(split).image_size
    if size <= 0:
        raise PstFastError(f"--data {tree}: images of several sizes; choose an --image-size (the training resolution)")
    t0 = time.perf_counter()
    delta, info = generate(split, size, p, seed, device=device, progress=progress)
    seconds = time.perf_counter() - t0
    info["generation_seconds"] = seconds
    meta = {"attack": spec.name, "params": dataclasses.asdict(p), "norm": spec.norm, "budget": spec.budget(p), "seed": seed,
            "reference": spec.reference, "data": str(tree), "generation": info}
    write_folder_poison(out, delta, split, size, meta)
    return _summary(spec.name, out, seconds, p, info)
