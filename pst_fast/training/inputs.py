"""The inputs of a training run, built from its TrainConfig: the train and test splits (canonical datasets, or
ImageFolder trees scanned in place), their batch loaders, and the seeded model. Shared by the run assembly
(:mod:`pst_fast.run`) and everything that rebuilds a finished run's inputs (offline SAL)."""
from __future__ import annotations

import dataclasses

import torch

from .. import data
from ..data.folder import FolderSplit, is_image_folder, scan, split_dir
from ..data.folder_loader import folder_loader
from ..data.folder_poison import load_folder_poison
from ..data.loader import BatchLoader, DeviceLoader
from ..data.validation import carve
from ..errors import PstFastError
from ..models import create_model
from .config import TrainConfig
from .rundir import load_checkpoint


def splits(cfg: TrainConfig, whole_arrays: bool = False):
    """(train, test) splits of ``cfg.data``: ImageDatasets for a canonical dataset, FolderSplits for an ImageFolder tree."""
    return folder_splits(cfg, whole_arrays) if is_image_folder(cfg.data) else load_splits(cfg)


def load_splits(cfg: TrainConfig):
    """The train and test splits of a canonical dataset."""
    if is_image_folder(cfg.data):
        raise PstFastError(f"--data {cfg.data}: an ImageFolder tree; this needs the canonical format (pst-fast data import {cfg.data} --out DIR)")
    if cfg.loader != "auto" or cfg.image_size or cfg.skip_bad or cfg.poison:
        raise PstFastError(f"--data {cfg.data}: --loader, --image-size, --skip-bad and --poison apply to ImageFolder trees, not to a "
                           "canonical dataset (a canonical poison is itself the --data)")
    train_ds, test_ds = data.load(cfg.data, "train"), data.load(cfg.data, "test")
    if train_ds.classes != test_ds.classes:
        raise PstFastError(f"--data {cfg.data}: train and test splits list different classes")
    if train_ds.shape != test_ds.shape:
        raise PstFastError(f"--data {cfg.data}: train images are {'x'.join(map(str, train_ds.shape))}, test images "
                           f"{'x'.join(map(str, test_ds.shape))} (H x W x C); both splits need one size")
    if cfg.val_split:
        return carve(train_ds, cfg.val_split)
    return train_ds, test_ds


def folder_splits(cfg: TrainConfig, whole_arrays: bool = False) -> tuple[FolderSplit, FolderSplit]:
    """The train and test splits of an ImageFolder tree, scanned in place, ``--poison``'s δ attached to the training split;
    refuses what needs whole arrays (``whole_arrays``: the defense replaces the training images before training)."""
    if cfg.val_split:
        raise PstFastError(f"--val-split {cfg.val_split}: carves from a canonical dataset, not an ImageFolder tree (pst-fast data import {cfg.data} --out DIR)")
    if whole_arrays:
        raise PstFastError(f"--defense {cfg.defense}: needs the canonical format, not an ImageFolder tree (pst-fast data import {cfg.data} --out DIR)")
    train_ds, test_ds = (scan(split_dir(cfg.data, s), "skip" if cfg.skip_bad else "fail", progress=not cfg.quiet) for s in data.SPLITS)
    if train_ds.classes != test_ds.classes:
        raise PstFastError(f"--data {cfg.data}: train/ and test/ hold different class folders")
    if cfg.poison:
        size = cfg.image_size or train_ds.native_size() or 0
        delta, meta = load_folder_poison(cfg.poison, train_ds, size)
        train_ds = dataclasses.replace(train_ds, delta=delta, delta_sha256=meta["sha256"])
    return train_ds, test_ds


def make_loaders(cfg: TrainConfig, train_ds, test_ds, layout: str, device: torch.device) -> tuple[BatchLoader, BatchLoader]:
    """(training loader, evaluation loader): DeviceLoaders for canonical splits, DALI or fallback loaders for FolderSplits."""
    if isinstance(train_ds, FolderSplit):
        kw = dict(image_size=cfg.image_size or train_ds.native_size() or 0, layout=layout, device=device)
        return (folder_loader(cfg.loader, train_ds, batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed, flip=cfg.flip, **kw),
                folder_loader(cfg.loader, test_ds, batch_size=cfg.eval_batch_size, shuffle=False, augment=False, **kw))
    norm = dict(mean=train_ds.meta["mean"], std=train_ds.meta["std"], layout=layout, device=device)
    return (DeviceLoader(train_ds, cfg.batch_size, shuffle=True, seed=cfg.seed, crop_pad=cfg.crop_pad, flip=cfg.flip, **norm),
            DeviceLoader(test_ds, cfg.eval_batch_size, shuffle=False, augment=False, **norm))


def build_model(cfg: TrainConfig, num_classes: int, device: torch.device) -> tuple[torch.nn.Module, bool]:
    """``cfg.model`` seeded by ``cfg.seed`` (or ``--init``'s weights) on ``device``; and whether it is channels_last."""
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, num_classes=num_classes)
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
