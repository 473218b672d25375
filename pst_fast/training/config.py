"""TrainConfig: every option of a training run, with its default and help text (the CLI is built from it)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields

from ..errors import PstFastError
from ..options import coerce, opt


@dataclass
class TrainConfig:
    data: str = opt("cifar10-mini", "dataset: a registered name, a directory with train/ and test/ (poisons too), or an "
                    "ImageFolder tree DIR/{train,test}/<class>/<image> read in place")
    loader: str = opt("auto", "ImageFolder data: dali, fallback (Pillow threads) or auto (dali when nvidia.dali imports)",
                      ("auto", "dali", "fallback"), later=True)
    image_size: int = opt(0, "ImageFolder data: side in pixels of the random resized (train) and centre (test) crops; "
                          "0 = native (square images of one size); must be 0 for canonical datasets", later=True, ge=0)
    skip_bad: bool = opt(False, "ImageFolder data: leave out (and count) unreadable images instead of failing", later=True)
    poison: str = opt("", "ImageFolder data: a poison directory (delta.npy + meta.json, from 'pst-fast poison --data TREE') "
                      "whose int8 δ the loader adds in the pipeline; empty = clean", later=True)
    val_split: int = opt(0, "hold out this many class-balanced training images (the same ones for every run) and evaluate on "
                         "their clean versions instead of the test split: for choosing defaults; 0 = train on all, evaluate on test",
                         later=True, ge=0)
    model: str = opt("fastnet", "model name from the registry ('pst-fast models' lists them)")
    epochs: int = opt(15, "training epochs", ge=1)
    batch_size: int = opt(128, "training batch size", ge=1)
    optimizer: str = opt("auto", "sgd (nesterov) or adamw; auto = adamw for ViTs, sgd otherwise", ("auto", "sgd", "adamw"))
    lr: float = opt(0.0, "peak learning rate; 0 = default of the optimizer (sgd 0.1, adamw 1e-3)", ge=0)
    momentum: float = opt(0.9, "SGD momentum", ge=0, lt=1)
    nesterov: bool = opt(True, "SGD with Nesterov momentum (pst_fast's default; the official UD protocol uses plain momentum)", later=True)
    weight_decay: float = opt(5e-4, "weight decay (decoupled for adamw; 0.05 is typical there)", ge=0)
    schedule: str = opt("cosine", "learning-rate schedule after warm-up; triangle = airbench's: from 0.2 of the peak rate up to the peak over the warm-up, "
                        "then linearly down to 0.07 of it", ("cosine", "onecycle", "constant", "triangle"))
    warmup_epochs: float = opt(1.0, "linear warm-up length in epochs (may be fractional)", ge=0)
    label_smoothing: float = opt(0.2, "cross-entropy label smoothing", ge=0, lt=1)
    grad_clip: float = opt(0.0, "clip the global gradient norm to this value; 0 = off", ge=0)
    crop_pad: int = opt(4, "random-crop padding in pixels (0 = no crop)", ge=0)
    pad_mode: str = opt("zero", "what the random crop's padding holds: zero (torchvision's RandomCrop) or reflect (the image "
                        "mirrored about its edge pixels, airbench's translations; needs --crop-pad below the image side)",
                        ("zero", "reflect"), later=True)
    flip: bool = opt(True, "random horizontal flip")
    alternate_flip: bool = opt(False, "airbench's alternating flips instead of random ones: each image has a fixed random flip, "
                               "inverted in odd epochs", later=True)
    lookahead: bool = opt(False, "airbench's lookahead: every 5 steps the weights are pulled to an EMA of themselves "
                          "(decay 0.95^5 · (step/total)^3), and the run ends on the EMA", later=True)
    stem_epochs: int = opt(0, "train the model's first block for this many epochs, then freeze it (airbench94: 3, its whitening "
                           "bias); 0 = never freeze it", later=True, ge=0)
    tta: int = opt(0, "test-time augmentation of the evaluation: 0 none, 1 mean logits of the image and its mirror, 2 airbench's "
                   "mirror + 1-px translations", (0, 1, 2), later=True)
    eval_every: int = opt(1, "evaluate on the clean test split every k epochs (the last epoch always)", ge=1)
    eval_batch_size: int = opt(1000, "test-time batch size", ge=1)
    seed: int = opt(0, "one seed for model init, data order and augmentation", ge=0)
    device: str = opt("auto", "cpu, cuda, cuda:N, or auto (cuda when available)")
    compile: bool = opt(False, "torch.compile the model (CUDA: reduce-overhead mode, i.e. CUDA graphs)")
    channels_last: str = opt("auto", "channels_last memory format: on, off, or auto (on for CNNs)", ("auto", "on", "off"))
    amp: str = opt("auto", "bf16 autocast: on, off, or auto (on for CUDA only); on is faster on a CPU with AVX512-BF16 "
                   "or AMX and much slower on one without (measured: docs/benchmarks.md)", ("auto", "on", "off"))
    max_steps: int = opt(0, "stop after this many optimizer steps (smoke runs); 0 = no limit", ge=0)
    defense: str = opt("standard", "training-time defense ('pst-fast defenses' lists them)")
    defense_args: str = opt("", "the defense's own parameters as key=value pairs separated by commas, e.g. 'threshold=0.3,rollback=init'")
    out: str = opt("", "run directory (config, metrics, checkpoint, plot); empty = no files")
    init: str = opt("", "start from the weights of this checkpoint file (model.pt of another run)")
    quiet: bool = opt(False, "no progress bars (for sweeps)")
    sal: str = opt("", "measure per-layer SAL after epochs (for UD): fast or exact; a bare --sal means fast ('pst-fast sal --help')",
                   ("", "fast", "exact"), const="fast")
    sal_args: str = opt("", "SAL knobs as key=value pairs, e.g. 'rounds=5,subset=2048,every=1' ('pst-fast sal --help' lists them)")
    tensorboard: str = opt("", "also write TensorBoard event files of every epoch to this directory (scalars: accuracies, "
                           "losses, per-layer SAL, PST's detector values; text: stage changes); empty = none")
    keep_checkpoints: bool = opt(False, "also keep every epoch's weights as epochs/NNNN.pt (SAL afterwards: 'pst-fast sal RUN')")
    protocol: str = opt("", "a named preset of the options above, which explicit options override: official-ud = the UD paper's "
                        "training (docs/metrics.md); airbench94 = the airbench94 recipe on --model airbench (docs/recipes.md)",
                        ("", "official-ud", "airbench94"), later=True)

    # options that do not change what a run computes (a resumed run may change them); a protocol is its resolved options
    VOLATILE = ("out", "quiet", "device", "compile", "keep_checkpoints", "tensorboard", "protocol")

    def validate(self) -> "TrainConfig":
        """This config with every option coerced by :func:`pst_fast.options.coerce` (strings typed; type, choices, finite,
        range checked; named by their flags); the defense's and SAL's own arguments are parsed where the run is assembled
        (:func:`pst_fast.run.resolve`)."""
        cfg = coerce(type(self), {f.name: getattr(self, f.name) for f in fields(self)}, "", flags=True)
        if cfg.sal_args and not cfg.sal:
            raise PstFastError(f"--sal-args {cfg.sal_args!r}: given without --sal")
        return cfg

    @property
    def eval_split(self) -> str:
        """The split evaluated every epoch: 'val' (carved from the training images) with --val-split, else 'test'."""
        return "val" if self.val_split else "test"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise PstFastError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**d)

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)
