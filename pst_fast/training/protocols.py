"""Named training protocols: presets of :class:`TrainConfig` options that reproduce a paper's training setting.

``official-ud`` is what the UD paper's code trains with (MLsecurityLab/HowFarAreFromTrueUnlearnability @ea9a4a6,
``poison_train_sharp.py``): ResNet-18, 50 epochs, batch 256, SGD lr 0.1 with plain momentum 0.9 and weight decay
5e-4, MultiStepLR at epochs 100/200/300 (so a constant rate within the 50 epochs), plain cross-entropy, random
crop (pad 4) + flip, and SAL in exact mode after every epoch. Options given explicitly override the preset
(e.g. ``--model fastnet`` for a reduced-scale run).
"""
from __future__ import annotations

from ..errors import PstFastError

PROTOCOLS: dict[str, dict] = {
    "official-ud": dict(model="resnet18", epochs=50, batch_size=256, optimizer="sgd", lr=0.1, momentum=0.9, nesterov=False,
                        weight_decay=5e-4, schedule="constant", warmup_epochs=0.0, label_smoothing=0.0, grad_clip=0.0,
                        crop_pad=4, flip=True, sal="exact"),
}


def with_protocol(options: dict) -> dict:
    """``options`` (the ones given explicitly) with the values of their ``protocol`` filled in where not given."""
    name = options.get("protocol", "")
    if not name:
        return dict(options)
    if name not in PROTOCOLS:
        raise PstFastError(f"--protocol {name!r}: expected one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name] | options


def describe(name: str) -> str:
    """One line: the options protocol ``name`` sets."""
    return ", ".join(f"{k}={v}" for k, v in PROTOCOLS[name].items())
