"""Progressive Staged Training: hold back the shallow blocks, one stage at a time, when the model learns a shortcut.

**What is known from the paper** (Dang et al., arXiv 2306.02064; only the abstracts are public, the official
repository holds a README): on unlearnable examples the model learns image and perturbation features early and
is then trapped; the shallow layers learn the perturbation and pass it on; the v2 measures the trap with an
activation-cluster measurement (ACM) and slows the shallow layers layer-wise when it signals perturbation
learning. **What pst_fast reconstructs** (the algorithm, thresholds and defaults are its own, chosen on a
validation split, see docs/pst.md):

- every ``check_every`` optimizer steps a :class:`~.probe.Probe` of training images measures the detector (default
  ``shortcut``: the accuracy the probe loses under at least two of the views gray, JPEG and blur — a quantity in
  accuracy points that does not grow with the dataset; ``acm4gap`` and ``train-acc`` are the alternatives), during
  ``window`` optimizer steps after the start or the last hold (traps close early; afterwards no pass is made) and
  within the first ``hold_until`` of the run's steps (a block rolled back later has no schedule left to relearn);
- a stage ends when the detector is at or above ``threshold`` for ``patience`` passes in a row; the next block
  from the input (``per_stage=one``; or every block up to ``depth`` at once, ``per_stage=all``) is then held back:
  restored to its initialization (``rollback=init``, the default: what it learned was the shortcut; ``calm``: its
  state at the last pass below half the threshold) and frozen (``slow=0``: no gradients, no optimizer state, no
  backward through a frozen prefix, BatchNorm statistics fixed) or slowed (its learning rate × ``slow``); training
  goes on, and the next stage may hold the next block;
- ``depth`` blocks at most (default: all but the last block before the head). With no detection (clean data) the
  run is standard training plus the probe passes.

**pst_fast's own addition** (``pst-jpeg``, not from the paper): the first detection holds the ``depth`` shallow
blocks at once, every batch is then JPEG-compressed (quality 10, the ISS transform), and the held blocks thaw at
``thaw_epoch``. Every transition (step, epoch, detector value, actions) goes to metrics.jsonl, ``pst.json`` (the
schedule as data and the detector trace) and ``pst.png``.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data import describe
from ..errors import PstFastError
from ..io import atomic_write_json
from ..options import opt
from ..training.hooks import Hooks, TrainState
from ..training.plot import plot_trace
from . import transforms
from .baselines import augment_normalized
from .probe import VIEWS, Probe

DETECTORS = ("shortcut", "acm4gap", "train-acc")


@dataclass
class PSTParams:
    detector: str = opt("shortcut", "what ends a stage: shortcut (probe accuracy lost under a quorum of views), acm4gap (the ACM of the "
                        "block about to be held, minus its ACM under the views) or train-acc (training accuracy since the last pass)",
                        DETECTORS, later=True, earlier="")  # the earlier PST had no detector field: its records keep their names, new ones differ
    threshold: float = opt(0.3, "detector value (accuracy points for shortcut/train-acc, Fisher ratio for acm4gap) that signals "
                           "shortcut learning", ge=0)
    patience: int = opt(2, "consecutive detector passes at or above the threshold that end a stage", ge=1)
    check_every: int = opt(20, "optimizer steps between detector passes; after every 10 calm passes in a row (detector below half "
                           "the threshold) the interval doubles, up to 8x: dense early, where traps close, cheap later", ge=1)
    window: int = opt(1000, "optimizer steps after the start of training, or after the last hold, during which the detector runs "
                      "(traps close within a few hundred steps; on clean data the views' gap creeps up as the model learns "
                      "fine detail: 0.32 at step 3,040 of full CIFAR-10); 0 = the whole run", ge=0)
    hold_until: float = opt(0.75, "fraction of the run's optimizer steps after which no block is held any more (and the detector "
                            "stops): a block rolled back to its initialization late has no schedule left to relearn (EM, validation "
                            "split, seed 1: a hold at epoch 14 of 15 took 51.7 to 27.3); 1 = until the end",
                            gt=0, le=1, later=True, earlier=1.0)
    views: str = opt("gray+jpeg+blur", "'+'-separated views of the probe for the shortcut detector: gray, jpeg, blur")
    quorum: int = opt(2, "views that must lose the probe's accuracy: the shortcut detector is the quorum-th largest gap", ge=1)
    probe_size: int = opt(500, "training images in the fixed, class-balanced detector probe", ge=1)
    depth: int = opt(0, "blocks that may be held back, counted from the input; 0 = all but the last block before the head")
    per_stage: str = opt("one", "blocks held back at a detection: one (the next block: progressive) or all (every block up to depth)",
                         ("one", "all"))
    slow: float = opt(0.0, "learning-rate multiplier of a held-back block: 0 = frozen, between 0 and 1 = slowed (still trained)", ge=0, lt=1)
    rollback: str = opt("init", "state a held-back block restarts from: init (its initialization: what it learned was the shortcut), "
                        "calm (its state at the last pass below half the threshold) or now (as it is)", ("init", "calm", "now"))
    dry_run: bool = opt(False, "measure and record every detector pass and what would be held, but hold nothing (detector studies)")


@dataclass
class PSTJpegParams(PSTParams):
    per_stage: str = opt("all", "blocks held back at a detection: one (the next block) or all (every block up to depth)", ("one", "all"))
    depth: int = opt(3, "blocks held back at the detection, counted from the input (fastnet: stem+s1+s2)")
    quality: int = opt(10, "JPEG quality of every batch while blocks are held (ISS: 10)", ge=1, le=95)
    thaw_epoch: float = opt(5.0, "epoch at which the held blocks train again, at thaw_lr × the scheduled lr (0 = never)")
    thaw_lr: float = opt(1.0, "learning-rate multiplier of thawed blocks")
    rollback: str = opt("calm", "state the held blocks restart from: calm (their state at the last pass below half the threshold), "
                        "init or now", ("init", "calm", "now"))


class StagedTraining:
    """Runs PST inside the trainer through its hooks (``hooks()``); ``held`` lists the held-back blocks, shallow first."""

    def __init__(self, cfg, p: PSTParams):
        views = tuple(p.views.split("+"))  # the fields' own bounds and choices were checked when they were parsed
        if not set(views) <= set(VIEWS) or len(set(views)) != len(views):
            raise PstFastError(f"--defense-args views={p.views!r}: expected '+'-separated views among {', '.join(VIEWS)}, each once")
        if p.quorum > len(views):
            raise PstFastError(f"--defense-args quorum={p.quorum}: expected 1..{len(views)} (the number of views)")
        self.cfg, self.p, self.views = cfg, p, views
        self.jpeg = isinstance(p, PSTJpegParams)
        self.held: list[str] = []
        self.thawed = False
        self.events: list[dict] = []
        self.trace: list[dict] = []
        self.streak = 0                   # passes in a row at or above the threshold
        self.calm_run = 0                 # passes in a row below half the threshold
        self.next_check = p.check_every   # step of the next detector pass
        self.calm: dict | None = None     # {"step", "blocks": {name: state_dict}} at the last calm pass
        self.loaded: dict = {}            # the state of a resumed run (load_state_dict)
        self.initial: dict | None = None  # the candidate blocks at step 0 (rollback=init)
        self.compiled: dict[tuple, object] = {}
        self.correct = self.seen = 0
        self.probe: Probe | None = None
        self.candidates: list[str] = []
        self.steps_per_epoch = 1
        self.last_hold_step = float("inf")  # no hold (and no detector pass) after this step: hold_until of the run's steps
        self.reported = 0
        self.run_dir: Path | None = None  # the run directory the trainer hands the hooks (None: a run without files)

    # ----------------------------------------------------------------- setup and resume
    def _setup(self, state: TrainState, x: torch.Tensor) -> None:
        names = list(state.model.blocks.keys())
        depth = self.p.depth or len(names) - 2
        if not 1 <= depth <= len(names) - 2:
            raise PstFastError(f"--defense-args depth={self.p.depth}: model {self.cfg.model} has {len(names) - 2} blocks before its last "
                               f"block and head ({', '.join(names)}); expected 1..{len(names) - 2} or 0 (all of them)")
        self.candidates = names[:depth]
        self.run_dir = state.run_dir
        train = state.train
        if train is None:
            raise PstFastError(f"--defense {self.cfg.defense}: its probe reads the training split, which the trainer did not hand over")
        self.steps_per_epoch = max(1, len(train) // self.cfg.batch_size)
        total = self.cfg.epochs * self.steps_per_epoch
        self.last_hold_step = self.p.hold_until * (min(total, self.cfg.max_steps) if self.cfg.max_steps else total)
        channels_last = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        self.probe = Probe(train, self.p.probe_size, self.cfg.seed, state.norm, x.device, channels_last,
                           self.views if self.p.detector in ("shortcut", "acm4gap") else (), self.p.quorum, self.cfg.image_size)
        if self.loaded:  # a resumed run: the state its checkpoint holds
            for key, value in self.loaded.items():
                setattr(self, key, value)
            self.reported = len(self.events)
        else:
            self.initial = {"step": 0, "blocks": self._copy(state.model)}
            self.calm = self.initial

    STATE = ("events", "trace", "held", "thawed", "streak", "calm_run", "next_check", "correct", "seen", "initial", "calm")

    def state_dict(self) -> dict:
        """What a resumed run continues with, saved in the run's checkpoint by the trainer (the same file, so always
        the checkpoint's own step): stages so far, detector counters, the rollback snapshots."""
        if self.probe is None:
            return {}
        return {k: getattr(self, k) for k in self.STATE} | {"correct": int(self.correct), "seen": int(self.seen)}

    def load_state_dict(self, state: dict) -> None:
        """Called by the trainer before a resumed run's first step; applied when the probe is set up."""
        self.loaded = state

    def _file(self, name: str) -> Path | None:
        return self.run_dir / name if self.run_dir is not None else None

    def _copy(self, model) -> dict:
        return {b: copy.deepcopy(model.blocks[b].state_dict()) for b in self.candidates}

    @property
    def frozen(self) -> tuple[str, ...]:
        """Blocks that take no gradient now: held back with slow=0 and not thawed."""
        return () if self.thawed or self.p.slow > 0 else tuple(self.held)

    @property
    def stage(self) -> str:
        return "thaw" if self.thawed else f"hold-{len(self.held)}" if self.held else "learn"

    # ----------------------------------------------------------------- forward
    def _prefix(self, model) -> int:
        """Number of leading blocks frozen now."""
        k = 0
        for name in model.blocks.keys():
            if name not in self.frozen:
                break
            k += 1
        return k

    def _suffix(self, model, k: int):
        if not self.cfg.compile:
            return lambda h: model.forward_from(h, k)
        if k not in self.compiled:  # one graph per frozen prefix; flags never change under a compiled graph
            self.compiled[k] = torch.compile(lambda h: model.forward_from(h, k))
        return self.compiled[k]

    def loss(self, fwd, x, y, state: TrainState) -> torch.Tensor:
        if self.probe is None:
            self._setup(state, x)
        model = state.model
        for name in self.frozen:
            model.blocks[name].eval()
        if self.jpeg and self.held:
            x = augment_normalized(x, state, lambda x01, g: transforms.jpeg_batch(x01, self.p.quality), salt=11)
        k = self._prefix(model)
        if k == 0:
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
        return F.cross_entropy(logits.float(), y, label_smoothing=self.cfg.label_smoothing)

    # ----------------------------------------------------------------- detector and transitions
    def _value(self, scores: dict) -> float | None:
        """The detector's value now; None when there is no block left for acm4gap to watch."""
        if self.p.detector == "acm4gap":
            nxt = self._pending()
            return scores[f"acm4gap/{nxt[0]}"] if nxt else None
        return scores[self.p.detector]

    def on_step(self, state: TrainState) -> None:
        if self.probe is None:
            return
        epoch = state.step / self.steps_per_epoch
        if len(self.held) == len(self.candidates) and not self.p.dry_run:  # every candidate held: no more probe passes
            if self.jpeg and not self.thawed and self.p.thaw_epoch and epoch >= self.p.thaw_epoch:
                self._thaw(state, epoch)
            return
        if state.step < self.next_check or self.window_closed(state.step) or state.step > self.last_hold_step:
            return
        model = state.model
        scores = self.probe.scores(model)
        model.train()
        for name in self.frozen:
            model.blocks[name].eval()
        scores["train-acc"] = float(self.correct) / max(1, self.seen)
        self.correct = self.seen = 0
        value = self._value(scores)
        self.trace.append({"step": state.step, "epoch": round(epoch, 4), "stage": self.stage, "value": value, **scores})
        if value is None:
            return
        calm = value < self.p.threshold / 2
        if calm:
            self.calm = {"step": state.step, "blocks": self._copy(model)}
        self.calm_run = self.calm_run + 1 if calm else 0
        self.next_check = state.step + self.p.check_every * 2 ** min(3, self.calm_run // 10)
        self.streak = self.streak + 1 if value >= self.p.threshold else 0
        if self.streak >= self.p.patience:
            self._hold(state, epoch, value)

    def window_closed(self, step: int) -> bool:
        """Whether ``step`` is more than ``window`` steps after the start or the last hold (no detector pass then)."""
        return bool(self.p.window) and step > (self.events[-1]["step"] if self.events else 0) + self.p.window

    def _pending(self) -> list[str]:
        """The blocks the next detection holds (in a dry run: those it would hold after the detections so far)."""
        done = self.held if not self.p.dry_run else self.candidates[: sum(len(e["would_hold"]) for e in self.events)]
        rest = [b for b in self.candidates if b not in done]
        return rest[:1] if self.p.per_stage == "one" else rest

    def _hold(self, state: TrainState, epoch: float, value: float) -> None:
        model, opt = state.model, state.optimizer
        new = self._pending()
        self.streak = 0
        if self.p.dry_run:
            self.events.append({"epoch": round(epoch, 4), "step": state.step, "stage": "dry-run", "detector": self.p.detector,
                                "value": value, "hold": [], "would_hold": new, "actions": [f"would hold {'+'.join(new) or 'nothing more'}"]})
            return
        source = {"calm": self.calm, "init": self.initial}.get(self.p.rollback)
        actions = []
        if source is not None:
            for b in new:
                model.blocks[b].load_state_dict(source["blocks"][b])
            at = source["step"] / self.steps_per_epoch
            actions.append(f"rollback {'+'.join(new)} to step {source['step']} (epoch {at:.2f})")
        for g in opt.param_groups:
            if g.get("name") in new:
                for p in g["params"]:
                    opt.state.pop(p, None)  # a rolled-back block must not resume with momentum from the trap
                if self.p.slow == 0:
                    opt.freeze(g["name"])
                else:
                    g["lr_scale"] = self.p.slow
        self.held += new
        actions.append(f"{'freeze' if self.p.slow == 0 else f'lr ×{self.p.slow:g}'} {'+'.join(new)}")
        if self.jpeg:
            actions.append(f"JPEG-{self.p.quality} every batch")
        self.events.append({"epoch": round(epoch, 4), "step": state.step, "stage": self.stage, "detector": self.p.detector,
                            "value": value, "hold": new, "actions": actions})

    def _thaw(self, state: TrainState, epoch: float) -> None:
        for name in self.held:
            state.optimizer.unfreeze(name, self.p.thaw_lr)
        self.thawed = True
        self.events.append({"epoch": round(epoch, 4), "step": state.step, "stage": "thaw", "detector": "epoch", "value": None,
                            "hold": [], "actions": [f"thaw {'+'.join(self.held)} at lr ×{self.p.thaw_lr:g}"]})

    def on_epoch_end(self, state: TrainState) -> None:
        if self.probe is None:
            return
        new = self.events[self.reported :]
        self.reported = len(self.events)
        state.log["pst_stage"] = self.stage
        if new:
            state.log["events"] = [f"{e['stage']} @{e['epoch']:.2f}" for e in new]
        if self.trace:
            state.log["pst"] = {k: v for k, v in self.trace[-1].items() if k not in ("step", "epoch", "stage")}
        path = self._file("pst.json")
        if path is None:
            return
        atomic_write_json(path, {"method": "pst-jpeg (pst_fast's own recipe)" if self.jpeg else "pst (pst_fast's reconstruction of Dang et al.)",
                                 "params": dataclasses.asdict(self.p), "train_images": len(state.train), "steps_per_epoch": self.steps_per_epoch,
                                 "held": self.held, "stage": self.stage, "events": self.events,
                                 "trace": self.trace})
        if self.trace:  # a run shorter than check_every steps has no detector pass to draw
            plot_trace(self.trace, self.events, self._file("pst.png"), threshold=self.p.threshold,
                       title=f"{self.cfg.defense} on {describe(self.cfg.data, self.cfg.poison)} ({self.cfg.model})")

    def hooks(self) -> Hooks:
        return Hooks(loss=self.loss, on_step=[self.on_step], on_epoch_end=[self.on_epoch_end], stateful={"pst": self})


def pst_hooks(cfg, p: PSTParams) -> Hooks:
    """Progressive Staged Training (Dang et al., arXiv 2306.02064; code not public, pst_fast's reconstruction): freeze the shallow blocks one by one, from initialization, as a detector sees a shortcut."""
    return StagedTraining(cfg, p).hooks()


def pst_jpeg_hooks(cfg, p: PSTJpegParams) -> Hooks:
    """PST + ISS-JPEG (pst_fast's own recipe, not in the paper): at the detection hold stem..s2, JPEG-10 every batch, thaw at epoch 5."""
    return StagedTraining(cfg, p).hooks()
