"""The training loop: ``fit`` runs the epochs of a run whose parts are already built (``pst_fast.run`` assembles them):
loader batches -> model -> loss -> optimizer, the hooks at their points, evaluation, one checkpoint per epoch, the
summary. It knows nothing of defenses or metrics: they reach it as hooks."""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import data
from ..data.loader import BatchLoader
from ..device import autocast
from ..errors import PstFastError
from .config import TrainConfig
from .hooks import Hooks, TrainState
from .optim import lr_factor, resolve_optimizer
from .plot import plot_curves
from .rundir import RunDir


def tta_logits(model, x: torch.Tensor, level: int = 0) -> torch.Tensor:
    """(B, K) float32 logits of ``x`` (B, C, H, W) averaged over test-time views: level 0 the image alone; 1 the image and
    its mirror; 2 (airbench's) half that mean, half the same mean over the image shifted by one pixel up-left and
    down-right (reflect padding)."""
    if level == 0:
        return model(x).float()

    def mirrored(v):
        return 0.5 * (model(v).float() + model(v.flip(-1)).float())

    base = mirrored(x)
    if level == 1:
        return base
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    return 0.5 * base + 0.25 * (mirrored(padded[..., :h, :w]) + mirrored(padded[..., 2:, 2:]))


@torch.no_grad()
def evaluate(model, loader: BatchLoader, amp, tta: int = 0) -> tuple[float, float]:
    """(mean cross-entropy, accuracy in [0, 1]) of ``model`` in eval mode over ``loader``, with ``tta`` (:func:`tta_logits`)."""
    was_training = model.training
    model.eval()
    loss = torch.zeros((), device=loader.device)
    correct = torch.zeros((), device=loader.device, dtype=torch.long)
    for x, y, _ in loader:
        with amp:
            logits = tta_logits(model, x, tta)
        loss += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    model.train(was_training)
    n = loader.num_samples
    return loss.item() / n, correct.item() / n


def fit(cfg: TrainConfig, model, opt, loader: BatchLoader, test_loader: BatchLoader, hooks: Hooks, run: RunDir, train_ds) -> dict:
    """Train ``model`` with ``opt`` for ``cfg.epochs`` from the run's last checkpoint (if any); returns the summary."""
    device = loader.device
    start_epoch = resume(run, model, opt, hooks, train_ds.num_classes)
    fwd = torch.compile(model, mode="reduce-overhead" if device.type == "cuda" else None) if cfg.compile else model
    amp = autocast(device, cfg.amp)
    _, peak_lr = resolve_optimizer(cfg)
    steps_per_epoch, total_steps, ev = len(loader), cfg.epochs * len(loader), cfg.eval_split
    state = TrainState(model=model, optimizer=opt, cfg=cfg, step=start_epoch * steps_per_epoch, train=train_ds, run_dir=run.path,
                       norm=loader.norm, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
    history = run.metrics()
    t_run = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        state.epoch, state.log = epoch, {}
        loader.set_epoch(epoch)
        model.train()
        loss_sum, ce_sum = torch.zeros((), device=device), torch.zeros((), device=device)  # ce: plain CE of the logits (SAL's L₀)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = ce_seen = 0
        t0 = time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=cfg.quiet, unit="batch")
        for x, y, _ in bar:
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
        line = {"epoch": epoch, "step": state.step, "lr": peak_lr * factor, "train_loss": loss_sum.item() / seen,
                "train_acc": correct.item() / seen, "epoch_seconds": epoch_seconds, "images_per_second": seen / epoch_seconds}
        if ce_seen:
            line["train_ce"] = ce_sum.item() / ce_seen
        last = epoch == cfg.epochs - 1 or (cfg.max_steps and state.step >= cfg.max_steps)
        if (epoch + 1) % cfg.eval_every == 0 or last:
            line[f"{ev}_loss"], line[f"{ev}_acc"] = evaluate(fwd, test_loader, amp, cfg.tta)
        for key in ("train_loss", f"{ev}_loss"):  # a diverged run is an error, never a finished run at chance accuracy
            if key in line and not math.isfinite(line[key]):
                raise PstFastError(f"epoch {epoch + 1}: the {key.replace('_', ' ')} is {line[key]} (training diverged; lower --lr, "
                                   f"set --grad-clip, or check the data's mean/std); the epoch was not recorded")
        state.log = line
        for h in hooks.on_epoch_end:
            h(state)
        history.append(line)
        run.save_epoch(line, {"epoch": epoch, "num_classes": train_ds.num_classes, "model": model.state_dict(), "optimizer": opt.state_dict(),
                              "hooks": {name: hook.state_dict() for name, hook in hooks.stateful.items()}}, keep=cfg.keep_checkpoints)
        if run.path is not None:
            plot_curves(history, run.file("curves.png"), title=f"{cfg.model} on {data.describe(cfg.data, cfg.poison)} ({cfg.defense})")
        if not cfg.quiet:
            test = f"  {ev} acc {line[f'{ev}_acc']:.4f}" if f"{ev}_acc" in line else ""
            tqdm.write(f"epoch {epoch + 1:3d}/{cfg.epochs}  loss {line['train_loss']:.4f}  train acc {line['train_acc']:.4f}{test}  {line['images_per_second']:.0f} img/s")
        if last or state.stop:
            break
    summary = summarize(cfg, history, time.perf_counter() - t_run + sum(l["epoch_seconds"] for l in history[:start_epoch])) | {
        "steps": state.step, "num_params": sum(p.numel() for p in model.parameters()), "data_fingerprint": train_ds.fingerprint,
        "poisoned": train_ds.is_poisoned, "device": str(device), "loader": loader.name, "config": cfg.to_dict()}
    run.finish(model, summary)
    return summary


def resume(run: RunDir, model, opt, hooks: Hooks, num_classes: int) -> int:
    """Load the run's last checkpoint (model, optimizer, the hooks' state) if there is one; the epoch to start from."""
    start_epoch, ckpt = run.resume_point()
    if ckpt is None:
        return start_epoch
    where = run.file("checkpoint.pt")
    if ckpt["num_classes"] != num_classes:
        raise PstFastError(f"{where}: has {ckpt['num_classes']} classes, the run's data has {num_classes}")
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    if hasattr(opt, "sync_requires_grad"):
        opt.sync_requires_grad()
    for name, hook in hooks.stateful.items():
        if name not in ckpt.get("hooks", {}):
            raise PstFastError(f"{where}: holds no {name} state (written by pst_fast 0.1.0 before it kept the hooks' state in the "
                               "checkpoint); train this run anew")
        hook.load_state_dict(ckpt["hooks"][name])
    return start_epoch


def summarize(cfg: TrainConfig, history: list[dict], wall_seconds: float) -> dict:
    """Final and peak accuracy on the evaluated split, epochs, wall time and mean throughput of a run's metrics lines."""
    ev = cfg.eval_split
    evaluated = [l for l in history if f"{ev}_acc" in l]
    if not evaluated:
        raise PstFastError("no evaluation happened: nothing to summarize")
    peak = max(evaluated, key=lambda l: l[f"{ev}_acc"])
    train_seconds = sum(l["epoch_seconds"] for l in history)
    return {f"final_{ev}_acc": evaluated[-1][f"{ev}_acc"], f"peak_{ev}_acc": peak[f"{ev}_acc"], "peak_epoch": peak["epoch"],
            "epochs": len(history), "wall_seconds": wall_seconds,
            "images_per_second": sum(l["images_per_second"] * l["epoch_seconds"] for l in history) / max(train_seconds, 1e-9)}
