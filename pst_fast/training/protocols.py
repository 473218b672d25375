"""Named training protocols: presets of :class:`TrainConfig` options that reproduce a paper's training setting.

``official-ud`` is what the UD paper's code trains with (MLsecurityLab/HowFarAreFromTrueUnlearnability @ea9a4a6,
``poison_train_sharp.py``): ResNet-18, 50 epochs, batch 256, SGD lr 0.1 with plain momentum 0.9 and weight decay
5e-4, MultiStepLR at epochs 100/200/300 (so a constant rate within the 50 epochs), plain cross-entropy, random
crop (pad 4) + flip, and SAL in exact mode after every epoch. Options given explicitly override the preset
(e.g. ``--model fastnet`` for a reduced-scale run).

``airbench94`` is the training of KellerJordan/cifar10-airbench's airbench94 (its published hyperparameters, restated
for the trainer's mean loss): batch 1024; Nesterov SGD with momentum 0.85, lr 11.5 per 1024 examples in its decoupled
form = 11.5 / (1 + 1 / (1 - 0.85)) = 1.5 on the mean loss, weight decay 0.0153 per 1024 examples = 0.0153 / 11.5 as the
coupled coefficient at that lr (BatchNorm biases move 64× faster at the same decay: the model's bias gain); the
triangle schedule (0.2 -> 1 over 23 % of 9.9 epochs -> 0.07); label smoothing 0.2; 2-px translations with reflect
padding and alternating flips; lookahead; the whitening bias frozen after 3 epochs; mirror + translate test-time
augmentation. Deviations (docs/recipes.md): 10 epochs instead of 9.9.
"""
from __future__ import annotations

from ..errors import PstFastError

PROTOCOLS: dict[str, dict] = {
    "official-ud": dict(model="resnet18", epochs=50, batch_size=256, optimizer="sgd", lr=0.1, momentum=0.9, nesterov=False,
                        weight_decay=5e-4, schedule="constant", warmup_epochs=0.0, label_smoothing=0.0, grad_clip=0.0,
                        crop_pad=4, flip=True, sal="exact"),
    "airbench94": dict(model="airbench", epochs=10, batch_size=1024, optimizer="sgd", lr=1.5, momentum=0.85, nesterov=True,
                       weight_decay=0.0153 / 11.5, schedule="triangle", warmup_epochs=2.3, label_smoothing=0.2, grad_clip=0.0,
                       crop_pad=2, pad_mode="reflect", flip=True, alternate_flip=True, lookahead=True, stem_epochs=3, tta=2),
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
