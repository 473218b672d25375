"""The training loop: loader batches -> model -> loss -> optimizer, evaluation on the clean test split.

Canonical datasets go through the device-resident DeviceLoader; ImageFolder trees are scanned in place and
decoded every epoch by the DALI or the fallback loader (``--loader``), at ``--image-size``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import data
from ..data.folder import FolderSplit, is_image_folder, scan, split_dir
from ..data.folder_loader import folder_loader
from ..data.folder_poison import load_folder_poison
from ..data.loader import BatchLoader, DeviceLoader
from ..data.validation import carve
from ..errors import PstFastError
from ..models import create_model
from ..models.registry import resolution_warning
from .config import TrainConfig
from .hooks import Hooks, TrainState
from .optim import block_param_groups, lr_factor, make_optimizer, resolve_optimizer
from .plot import plot_curves
from .rundir import RunDir, load_checkpoint


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise PstFastError(f"--device {name!r}: expected cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PstFastError(f"--device {name}: CUDA is not available on this machine")
    return dev


def amp_enabled(amp: str, device) -> bool:
    """``--amp`` on, off or auto (on for CUDA only) -> whether bf16 autocast runs on ``device``."""
    return amp == "on" or (amp == "auto" and torch.device(device).type == "cuda")


def autocast(device: torch.device, cfg: TrainConfig):
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp_enabled(cfg.amp, device) else contextlib.nullcontext()


@torch.no_grad()
def evaluate(model, loader: BatchLoader, amp) -> tuple[float, float]:
    """(mean cross-entropy, accuracy in [0, 1]) of ``model`` in eval mode over ``loader``."""
    was_training = model.training
    model.eval()
    loss = torch.zeros((), device=loader.device)
    correct = torch.zeros((), device=loader.device, dtype=torch.long)
    for x, y, _ in loader:
        with amp:
            logits = model(x)
        loss += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    model.train(was_training)
    n = loader.num_samples
    return loss.item() / n, correct.item() / n


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


def folder_splits(cfg: TrainConfig, hooks: Hooks) -> tuple[FolderSplit, FolderSplit]:
    """The train and test splits of an ImageFolder tree, scanned in place, ``--poison``'s δ attached to the training split;
    refuses what needs whole arrays."""
    if cfg.val_split:
        raise PstFastError(f"--val-split {cfg.val_split}: carves from a canonical dataset, not an ImageFolder tree (pst-fast data import {cfg.data} --out DIR)")
    if hooks.prepare_train is not None:
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


def build_model(cfg: TrainConfig, num_classes: int, device: torch.device) -> torch.nn.Module:
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


def train(cfg: TrainConfig | None = None, hooks: Hooks | None = None, **options) -> dict:
    """Train ``cfg.model`` on ``cfg.data``; returns the summary (also written to ``cfg.out``/summary.json).

    Keyword ``options`` override fields of ``cfg`` (``train(model="resnet18", epochs=30)``); a ``protocol`` among them
    fills in its preset where the others do not say (``train(protocol="official-ud", model="fastnet")``).
    """
    from .protocols import with_protocol

    cfg = dataclasses.replace(cfg or TrainConfig(), **with_protocol(options)).validate()
    device = resolve_device(cfg.device)
    run = RunDir(cfg.out, cfg)
    run.check()
    if run.finished:
        return run.summary()
    from ..defenses import defense_hooks  # defenses build on the trainer's hooks: imported at call time

    hooks = defense_hooks(cfg.defense, cfg).merged(hooks or Hooks())
    folder = is_image_folder(cfg.data)
    train_ds, test_ds = folder_splits(cfg, hooks) if folder else load_splits(cfg)
    if hooks.prepare_train is not None:
        train_ds = hooks.prepare_train(train_ds)
    run.check_data(train_ds, test_ds)
    model, channels_last = build_model(cfg, train_ds.num_classes, device)
    groups = (hooks.param_groups or block_param_groups)(model, cfg)
    opt = (hooks.make_optimizer or make_optimizer)(groups, cfg)
    _, peak_lr = resolve_optimizer(cfg)
    loader, test_loader = make_loaders(cfg, train_ds, test_ds, "channels_last" if channels_last else "nchw", device)
    norm = dict(mean=loader.mean, std=loader.std, layout=loader.layout, device=device)
    if folder and not cfg.quiet:
        skipped = len(train_ds.skipped) + len(test_ds.skipped)
        tqdm.write(f"data: ImageFolder {cfg.data}: {len(train_ds)} train / {len(test_ds)} test images, {train_ds.num_classes} classes"
                   f"{f', {skipped} unreadable images skipped' if skipped else ''}, {loader.image_size} px; loader: {loader.describe()}")
    if folder and (warning := resolution_warning(cfg.model, model.default_image_size, loader.image_size)):
        print(f"pst-fast: warning: {warning}", file=sys.stderr)
    if len(loader) == 0:
        raise PstFastError(f"--batch-size {cfg.batch_size}: larger than the training set ({len(train_ds)} images)")
    run.create(train_ds, test_ds)
    start_epoch, ckpt = run.resume_point()
    if ckpt is not None:
        if ckpt["num_classes"] != train_ds.num_classes:
            raise PstFastError(f"{run.file('checkpoint.pt')}: has {ckpt['num_classes']} classes, --data {cfg.data} has {train_ds.num_classes}")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if hasattr(opt, "sync_requires_grad"):
            opt.sync_requires_grad()
    fwd = torch.compile(model, mode="reduce-overhead" if device.type == "cuda" else None) if cfg.compile else model
    amp = autocast(device, cfg)
    steps_per_epoch, total_steps = len(loader), cfg.epochs * len(loader)
    state = TrainState(model=model, optimizer=opt, cfg=cfg, step=start_epoch * steps_per_epoch, train=train_ds,
                       mean=torch.tensor(norm["mean"], device=device).view(1, -1, 1, 1),
                       std=torch.tensor(norm["std"], device=device).view(1, -1, 1, 1))
    if cfg.sal:
        from ..metrics.record import SALRecorder
        from ..metrics.sal import parse_sal_config

        hooks.on_epoch_end.append(SALRecorder(parse_sal_config(cfg.sal, cfg.sal_args), cfg, train_ds, test_ds, run.path, start_epoch, **norm))
    history = run.metrics()
    ev = cfg.eval_split
    if cfg.tensorboard:  # last, so that it sees the fields the other hooks add to the line
        from ..tensorboard import TensorBoardLog

        hooks.on_epoch_end.append(TensorBoardLog(cfg.tensorboard, run.path, history))
    train_seconds = sum(l["epoch_seconds"] for l in history)
    t_run = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        state.epoch, state.log = epoch, {}
        loader.set_epoch(epoch)
        model.train()
        loss_sum = torch.zeros((), device=device)
        ce_sum = torch.zeros((), device=device)  # plain cross-entropy of the training logits (SAL's L₀ without smoothing)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = ce_seen = 0
        t0 = time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=cfg.quiet, unit="batch")
        for x, y, idx in bar:
            factor = lr_factor(cfg, state.step, total_steps, steps_per_epoch)
            for g in opt.param_groups:
                g["lr"] = peak_lr * g.get("lr_scale", 1.0) * factor
            state.logits = None
            with amp:
                if hooks.loss is not None:
                    loss = hooks.loss(fwd, x, y, state)
                else:
                    state.logits = fwd(x)
                    loss = F.cross_entropy(state.logits.float(), y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            state.step += 1
            state.loss = loss.detach()
            loss_sum += state.loss * len(y)
            if state.logits is not None:
                correct += (state.logits.argmax(1) == y).sum()
                ce_sum += F.cross_entropy(state.logits.detach().float(), y, reduction="sum")
                ce_seen += len(y)
            seen += len(y)
            for h in hooks.on_step:
                h(state)
            if not cfg.quiet and state.step % 10 == 0:
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}", acc=f"{correct.item() / seen:.3f}", img_s=f"{seen / (time.perf_counter() - t0):.0f}")
            if cfg.max_steps and state.step >= cfg.max_steps:
                break
        epoch_seconds = time.perf_counter() - t0
        train_seconds += epoch_seconds
        line = {"epoch": epoch, "step": state.step, "lr": peak_lr * factor, "train_loss": loss_sum.item() / seen,
                "train_acc": correct.item() / seen, "epoch_seconds": epoch_seconds, "images_per_second": seen / epoch_seconds}
        if ce_seen:
            line["train_ce"] = ce_sum.item() / ce_seen
        last = epoch == cfg.epochs - 1 or (cfg.max_steps and state.step >= cfg.max_steps)
        if (epoch + 1) % cfg.eval_every == 0 or last:
            line[f"{ev}_loss"], line[f"{ev}_acc"] = evaluate(fwd, test_loader, amp)
        for key in ("train_loss", f"{ev}_loss"):  # a diverged run is an error, never a finished run at chance accuracy
            if key in line and not math.isfinite(line[key]):
                raise PstFastError(f"epoch {epoch + 1}: the {key.replace('_', ' ')} is {line[key]} (training diverged; lower --lr, "
                                   f"set --grad-clip, or check the data's mean/std); the epoch was not recorded")
        state.log = line
        for h in hooks.on_epoch_end:
            h(state)
        history.append(line)
        run.save_epoch(line, {"epoch": epoch, "num_classes": train_ds.num_classes, "model": model.state_dict(), "optimizer": opt.state_dict()},
                       keep=cfg.keep_checkpoints)
        if run.path is not None:
            plot_curves(history, run.file("curves.png"), title=f"{cfg.model} on {data.describe(cfg.data, cfg.poison)} ({cfg.defense})")
        if not cfg.quiet:
            test = f"  {ev} acc {line[f'{ev}_acc']:.4f}" if f"{ev}_acc" in line else ""
            tqdm.write(f"epoch {epoch + 1:3d}/{cfg.epochs}  loss {line['train_loss']:.4f}  train acc {line['train_acc']:.4f}{test}  {line['images_per_second']:.0f} img/s")
        if last or state.stop:
            break
    evaluated = [l for l in history if f"{ev}_acc" in l]
    if not evaluated:
        raise PstFastError("no evaluation happened: nothing to summarize")
    peak = max(evaluated, key=lambda l: l[f"{ev}_acc"])
    summary = {
        f"final_{ev}_acc": evaluated[-1][f"{ev}_acc"],
        f"peak_{ev}_acc": peak[f"{ev}_acc"],
        "peak_epoch": peak["epoch"],
        "epochs": len(history),
        "steps": state.step,
        "wall_seconds": time.perf_counter() - t_run + (0.0 if ckpt is None else sum(l["epoch_seconds"] for l in history[:start_epoch])),
        "images_per_second": sum(l["images_per_second"] * l["epoch_seconds"] for l in history) / max(train_seconds, 1e-9),
        "num_params": sum(p.numel() for p in model.parameters()),
        "data_fingerprint": train_ds.fingerprint,
        "poisoned": train_ds.is_poisoned,
        "device": str(device),
        "loader": loader.name,
        "config": cfg.to_dict(),
    }
    run.finish(model, summary)
    return summary
