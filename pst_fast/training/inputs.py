"""The inputs of a training run, built from its TrainConfig: the train and test splits (:class:`pst_fast.data.Split`:
canonical datasets, or ImageFolder trees scanned in place), their batch loaders, and the seeded model. Shared by the run assembly
(:mod:`pst_fast.run`) and everything that rebuilds a finished run's inputs (offline SAL)."""
from __future__ import annotations

import torch

from .. import data
from ..data.loader import BatchLoader
from ..errors import PstFastError
from ..models import create_model
from .config import TrainConfig
from .rundir import load_checkpoint


def reading(cfg: TrainConfig) -> data.Reading:
    """How the run ``cfg`` reads its data (loader, image size, crop padding, flip)."""
    return data.Reading(cfg.loader, cfg.image_size, cfg.crop_pad, cfg.flip, cfg.alternate_flip, cfg.pad_mode)


def splits(cfg: TrainConfig, needs_arrays: str = "") -> tuple[data.Split, data.Split]:
    """(train, test) splits of ``cfg.data`` (:func:`pst_fast.data.open_splits`: a canonical dataset, or an ImageFolder tree
    scanned in place with ``--poison``'s δ attached); ``needs_arrays`` names what needs the canonical format (a tree is then refused)."""
    return data.open_splits(cfg.data, reading(cfg), skip_bad=cfg.skip_bad, poison=cfg.poison, val_split=cfg.val_split,
                            needs_arrays=needs_arrays, progress=not cfg.quiet)


def make_loaders(cfg: TrainConfig, train_ds: data.Split, test_ds: data.Split, layout: str, device: torch.device) -> tuple[BatchLoader, BatchLoader]:
    """(training loader, evaluation loader), both normalized as the training split and read at its size."""
    kw = dict(reading=reading(cfg).at(train_ds), norm=train_ds.norm, layout=layout, device=device)
    return (data.batch_loader(train_ds, cfg.batch_size, shuffle=True, seed=cfg.seed, **kw),
            data.batch_loader(test_ds, cfg.eval_batch_size, shuffle=False, augment=False, **kw))


def build_model(cfg: TrainConfig, num_classes: int, device: torch.device, train: data.Split | None = None) -> tuple[torch.nn.Module, bool]:
    """``cfg.model`` seeded by ``cfg.seed`` (or ``--init``'s weights) on ``device``; and whether it is channels_last. A model
    with a data-dependent initialization (``data_init_samples``) reads it from ``train``, evenly strided over the split."""
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, num_classes=num_classes)
    if train is not None:
        model.init_from(len(train), lambda idx: train.norm.from01(train.pixels(idx, "cpu")))
    if cfg.init:
        state = load_checkpoint(cfg.init)
        state = state.get("model", state)
        head = [k for k in state if k.endswith(".weight")][-1:]
        if head and state[head[0]].shape[0] != num_classes:
            raise PstFastError(f"--init {cfg.init}: checkpoint has {state[head[0]].shape[0]} classes, the dataset {cfg.data} has {num_classes}")
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise PstFastError(f"--init {cfg.init}: does not fit model {cfg.model} ({str(e).splitlines()[0][:120]})") from None
    cl = cfg.channels_last == "on" or (cfg.channels_last == "auto" and not cfg.model.startswith("vit"))
    return model.to(device, memory_format=torch.channels_last if cl else torch.contiguous_format), cl
