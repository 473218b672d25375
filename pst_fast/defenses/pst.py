"""Progressive Staged Training (Dang et al., arXiv 2306.02064): hold back the shallow blocks when the trap closes.

On unlearnable examples the shallow blocks learn the perturbation shortcut first and pass it on, trapping
the model. PST trains in **stages**; a stage says which blocks are frozen, each block's learning-rate
multiplier, the loss, and how it ends (a detector trigger or an epoch). The default schedule:

1. ``learn``: every block trains; every ``check_every`` steps the detectors run (training accuracy since
   the last check, probe accuracy, and the activation-cluster measurement of every block on a fixed probe
   subset, see :mod:`.probe`) and the held-back blocks are snapshotted. It ends when the ``trigger``
   detector crosses its threshold within the first ``window`` epochs.
2. ``hold``: the held-back (``shallow``) blocks are rolled back to their snapshot at ``rollback`` × the
   trigger's epoch (the trap starts closing well before the detector sees it) and frozen (BatchNorm
   statistics too); optionally the deeper blocks or the head are re-initialized; the stage loss and
   augmentation apply. Ends at ``thaw_epoch`` (or never).
3. ``thaw`` (if ``thaw_epoch`` > 0): the held-back blocks train again at ``thaw_lr`` × the scheduled lr,
   still under the stage transform.

Defaults (chosen by ``benchmarks/pst_study.py``, see docs/pst.md): trigger at 60% training accuracy within
2 epochs, roll the first three blocks back to a quarter of the trigger's epoch, hold them while every batch
is JPEG-compressed (quality 10), thaw them at epoch 5 at the full learning rate.

If the trigger never fires (clean data) the run is exactly standard training plus the detector passes.
Freezing uses the freeze-aware optimizer (no gradients, no state, no weight decay for frozen blocks) and
the frozen prefix runs under no_grad, so backward starts at the first trainable block. With ``--compile``
each frozen set gets its own compiled graph (requires_grad is never flipped under a live graph).
Every transition (epoch, step, detector value, actions) goes to metrics.jsonl, ``pst.json`` and ``pst.png``.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import data
from ..errors import PstFastError
from ..io import atomic_torch_save, atomic_write_json
from ..options import opt, parse_kv_args
from ..training.hooks import Hooks, TrainState
from ..training.plot import plot_trace
from . import transforms
from .baselines import augment_normalized
from .probe import Probe


HOLD_AUGMENTS = {"none": None, "jpeg": lambda x, g: transforms.jpeg_batch(x, 10), "ueraser": transforms.ueraser}


@dataclass
class PSTParams:
    shallow: str = opt("auto", "blocks held back when the trap is detected, '+'-separated; auto = the first 3 blocks (fastnet: stem+s1+s2)")
    trigger: str = opt("train-acc:0.6", "DETECTOR:THRESHOLD ending stage 1; detectors: train-acc, probe-acc, acm1/BLOCK, acm4/BLOCK")
    window: float = opt(2.0, "epochs from the start in which the trigger may fire (a later rise is ordinary learning)")
    check_every: int = opt(20, "optimizer steps between detector passes and snapshots")
    rollback: float = opt(0.25, "restore the held-back blocks to their snapshot at this fraction of the trigger's epoch (0 = initialization, 1 = as they are)")
    reinit: str = opt("none", "re-initialize after the trigger: none, head, or deep (every block after the held-back ones)")
    thaw_epoch: float = opt(5.0, "epoch at which the held-back blocks train again (0 = never)")
    thaw_lr: float = opt(1.0, "learning-rate multiplier of thawed blocks")
    loss: str = opt("ce", "loss after the trigger: ce (the run's label smoothing) or ce-plain (none)")
    augment: str = opt("jpeg", "batch transform after the trigger: none, jpeg (batched JPEG, quality 10) or ueraser (plasma, channel shuffle, TrivialAugment)")
    probe_size: int = opt(500, "training images in the fixed detector probe (class-balanced)")


@dataclass
class Stage:
    """Frozen blocks, per-block lr multipliers, loss and batch augmentation, how the stage ends ('trigger', 'epoch:E', 'end'), entry actions."""

    name: str
    frozen: tuple[str, ...] = ()
    lr_scale: dict[str, float] = field(default_factory=dict)
    loss: str = "ce"
    augment: str = "none"
    until: str = "end"
    enter: tuple[str, ...] = ()


def schedule(p: PSTParams, blocks: list[str]) -> list[Stage]:
    """The default three-stage schedule for a model with ``blocks`` (shallow to deep)."""
    shallow = tuple(blocks[:3]) if p.shallow == "auto" else tuple(p.shallow.split("+"))
    unknown = [b for b in shallow if b not in blocks]
    if unknown or not shallow or blocks[-1] in shallow:
        raise PstFastError(f"--defense-args shallow={p.shallow!r}: expected '+'-separated blocks among {', '.join(blocks[:-1])}")
    enter = (("rollback",) if p.rollback < 1 else ()) + (() if p.reinit == "none" else (f"reinit-{p.reinit}",))
    stages = [Stage("learn", until="trigger"),
              Stage("hold", frozen=shallow, loss=p.loss, augment=p.augment, enter=enter, until=f"epoch:{p.thaw_epoch}" if p.thaw_epoch > 0 else "end")]
    if p.thaw_epoch > 0:
        stages.append(Stage("thaw", lr_scale={b: p.thaw_lr for b in shallow}, loss=p.loss, augment=p.augment))
    return stages


class StagedTraining:
    """Runs a stage schedule inside the trainer through its hooks (``hooks()``)."""

    def __init__(self, cfg, p: PSTParams):
        if data.is_image_folder(cfg.data):
            raise PstFastError(f"--defense pst: its probe reads the canonical format, not an ImageFolder tree (pst-fast data import {cfg.data} --out DIR)")
        if p.reinit not in ("none", "head", "deep") or p.loss not in ("ce", "ce-plain") or p.augment not in HOLD_AUGMENTS:
            raise PstFastError(f"--defense-args reinit={p.reinit!r} loss={p.loss!r} augment={p.augment!r}: expected reinit none|head|deep, loss ce|ce-plain, augment {'|'.join(HOLD_AUGMENTS)}")
        if p.check_every < 1 or not 0 <= p.rollback <= 1 or p.probe_size < 1:
            raise PstFastError(f"--defense-args check_every={p.check_every} rollback={p.rollback} probe_size={p.probe_size}: expected check_every ≥ 1, rollback in [0, 1], probe_size ≥ 1")
        self.cfg, self.p = cfg, p
        self.detector, _, threshold = p.trigger.rpartition(":")
        try:
            self.threshold = float(threshold)
        except ValueError:
            raise PstFastError(f"--defense-args trigger={p.trigger!r}: expected DETECTOR:THRESHOLD, e.g. train-acc:0.6") from None
        self.stages: list[Stage] | None = None
        self.index = 0
        self.events: list[dict] = []
        self.trace: list[dict] = []
        self.snapshots: list[tuple[float, dict]] = []  # (epoch, held-back blocks' state) while the trigger may fire
        self.compiled: dict[tuple, object] = {}
        self.correct = self.seen = 0
        self.probe: Probe | None = None
        self.steps_per_epoch = 1
        self.reported = 0
        self.counters: dict[str, list[int]] = {}

    # ----------------------------------------------------------------- setup
    def _setup(self, state: TrainState, x: torch.Tensor) -> None:
        model, cfg = state.model, self.cfg
        names = list(model.blocks.keys())
        self.stages = schedule(self.p, names)
        if self.detector not in ("train-acc", "probe-acc") and self.detector.split("/", 1)[-1] not in names:
            raise PstFastError(f"--defense-args trigger={self.p.trigger!r}: unknown detector (train-acc, probe-acc, acm1/BLOCK, acm4/BLOCK)")
        train = data.load(cfg.data, "train", verify=False)
        self.steps_per_epoch = max(1, len(train) // cfg.batch_size)
        channels_last = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        self.probe = Probe(train, self.p.probe_size, cfg.seed, state.mean.flatten().tolist(), state.std.flatten().tolist(), x.device, channels_last)
        if state.step == 0:
            self._snapshot(model, 0.0)
        saved = self._file("pst.json")
        if state.step > 0 and saved is not None and saved.is_file():
            self._resume(state, json.loads(saved.read_text()))

    def _resume(self, state: TrainState, s: dict) -> None:
        """Continue from the checkpoint's step: what the state file holds beyond it (written just before a kill) is dropped."""
        self.events = [e for e in s["events"] if e["step"] <= state.step]
        self.trace = [t for t in s["trace"] if t["step"] <= state.step]
        self.index = len(self.events)
        self.reported = len(self.events)
        self.counters = s.get("counters", {})
        self.correct, self.seen = self.counters.get(str(state.step), (0, 0))
        snaps = self._file("pst_snapshots.pt")
        if snaps.is_file():
            epoch = state.step / self.steps_per_epoch
            self.snapshots = [(e, sd) for e, sd in torch.load(snaps, weights_only=True) if e <= epoch + 1e-9]

    def _file(self, name: str) -> Path | None:
        return Path(self.cfg.out) / name if self.cfg.out else None

    @property
    def stage(self) -> Stage:
        return self.stages[self.index]

    def _snapshot(self, model, epoch: float) -> None:
        held = self.stages[1].frozen
        self.snapshots.append((epoch, {b: copy.deepcopy(model.blocks[b].state_dict()) for b in held}))

    # ----------------------------------------------------------------- forward
    def _prefix(self, model) -> int:
        """Number of leading blocks frozen in the current stage."""
        k = 0
        for name in model.blocks.keys():
            if name not in self.stage.frozen:
                break
            k += 1
        return k

    def _suffix(self, model, k: int):
        if not self.cfg.compile:
            return lambda h: model.forward_from(h, k)
        key = (k, self.stage.frozen)
        if key not in self.compiled:  # one graph per frozen set; flags never change under a compiled graph
            self.compiled[key] = torch.compile(lambda h: model.forward_from(h, k))
        return self.compiled[key]

    def loss(self, fwd, x, y, state: TrainState) -> torch.Tensor:
        if self.stages is None:
            self._setup(state, x)
        model = state.model
        for name in self.stage.frozen:
            model.blocks[name].eval()
        if self.stage.augment != "none":
            x = augment_normalized(x, state, HOLD_AUGMENTS[self.stage.augment], salt=11)
        k = self._prefix(model)
        if k == 0 and not self.stage.frozen:
            logits = fwd(x)
        else:
            h = x
            with torch.no_grad():
                for block in list(model.blocks.values())[:k]:
                    h = block(h)
            logits = self._suffix(model, k)(h)
        state.logits = logits
        self.correct += (logits.argmax(1) == y).sum()
        self.seen += len(y)
        smoothing = self.cfg.label_smoothing if self.stage.loss == "ce" else 0.0
        return F.cross_entropy(logits.float(), y, label_smoothing=smoothing)

    # ----------------------------------------------------------------- detectors and transitions
    def on_step(self, state: TrainState) -> None:
        if state.step % self.p.check_every:
            return
        model = state.model
        scores = self.probe.scores(model)
        model.train()
        for name in self.stage.frozen:
            model.blocks[name].eval()
        scores["train-acc"] = float(self.correct) / max(1, self.seen)
        scores["probe-acc"] = scores.pop("probe_acc")
        self.correct = self.seen = 0
        epoch = state.step / self.steps_per_epoch
        self.trace.append({"step": state.step, "epoch": round(epoch, 4), "stage": self.stage.name, **scores})
        until = self.stage.until
        if until == "trigger" and epoch <= self.p.window:
            self._snapshot(model, epoch)
            if scores[self.detector] >= self.threshold:
                self._advance(state, epoch, scores[self.detector])
        elif until.startswith("epoch:") and epoch >= float(until.split(":", 1)[1]):
            self._advance(state, epoch, None)

    def _advance(self, state: TrainState, epoch: float, value: float | None) -> None:
        model, opt = state.model, state.optimizer
        self.index += 1
        stage, names = self.stage, list(model.blocks.keys())
        actions = []
        for action in stage.enter:
            if action == "rollback":
                target = self.p.rollback * epoch
                at, snap = ([s for s in self.snapshots if s[0] <= target] or self.snapshots[:1])[-1]
                for b, sd in snap.items():
                    model.blocks[b].load_state_dict(sd)
                actions.append(f"rollback {'+'.join(snap)} to epoch {at:.2f}")
            else:
                deep = names[names.index(stage.frozen[-1]) + 1 :] if action == "reinit-deep" else names[-1:]
                for b in deep:
                    for m in model.blocks[b].modules():
                        if hasattr(m, "reset_parameters"):
                            m.reset_parameters()
                        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                            m.reset_running_stats()
                    for p in model.blocks[b].parameters():
                        opt.state.pop(p, None)
                actions.append(f"reinit {'+'.join(deep)}")
        for g in opt.param_groups:
            name = g.get("name")
            if name in stage.frozen:
                opt.freeze(name)
                for p in g["params"]:
                    opt.state.pop(p, None)  # a rolled-back block must not resume with momentum from the trap
            elif g.get("frozen"):
                opt.unfreeze(name)
            g["lr_scale"] = stage.lr_scale.get(name, 1.0)
        if stage.frozen:
            actions.append(f"freeze {'+'.join(stage.frozen)}")
        if stage.lr_scale:
            actions.append(", ".join(f"lr {b}×{s:g}" for b, s in stage.lr_scale.items()))
        event = {"epoch": round(epoch, 4), "step": state.step, "stage": stage.name, "detector": self.detector if value is not None else "epoch",
                 "value": value, "actions": actions}
        self.events.append(event)
        self.snapshots.clear()

    def on_epoch_end(self, state: TrainState) -> None:
        if self.stages is None:
            return
        new = self.events[self.reported :]
        self.reported = len(self.events)
        state.log["pst_stage"] = self.stage.name
        if new:
            state.log["events"] = [f"{e['stage']} @{e['epoch']:.2f}" for e in new]
        if self.trace:
            state.log["pst"] = {k: v for k, v in self.trace[-1].items() if k not in ("step", "epoch", "stage")}
        path = self._file("pst.json")
        if path is not None:
            if self.stage.until == "trigger" and self.snapshots:  # rollback targets survive a kill
                atomic_torch_save(self.snapshots, self._file("pst_snapshots.pt"))
            # training-accuracy counters at the last two epoch ends: a resumed run continues the interval it was in
            self.counters = dict(list(self.counters.items())[-1:]) | {str(state.step): [int(self.correct), int(self.seen)]}
            atomic_write_json(path, {"params": dataclasses.asdict(self.p), "stage": self.index, "events": self.events, "trace": self.trace,
                                     "counters": self.counters})
            if self.trace:  # a run shorter than check_every steps has no detector pass to draw
                plot_trace(self.trace, self.events, self._file("pst.png"), title=f"PST on {self.cfg.data} ({self.cfg.model})")

    def hooks(self) -> Hooks:
        return Hooks(loss=self.loss, on_step=[self.on_step], on_epoch_end=[self.on_epoch_end])


def pst_hooks(cfg) -> Hooks:
    """Progressive Staged Training: hold back the shallow blocks when a detector sees the trap close."""
    return StagedTraining(cfg, parse_kv_args(cfg.defense_args, PSTParams)).hooks()
