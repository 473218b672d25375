"""A training run, assembled in one place. The edges (CLI, API, sweep specs, the attacks' surrogate training) hand
over flat options; :func:`resolve` parses them once into a :class:`RunSpec` (the protocol preset applied, every option
checked, the defense's parameters and SAL's settings typed); :func:`train` turns it into the run's parts (splits,
loaders, model, optimizer, hooks: the defense's, SAL's, TensorBoard's) and hands them to the loop
(:func:`pst_fast.training.loop.fit`). :func:`measure_sal` rebuilds a finished run's inputs the same way.

Layers, bottom up: data, models, ops -> device, pgd -> training (the loop) -> defenses, metrics -> run -> attacks,
sweep, api, cli (docs/architecture.md)."""
from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from .defenses import DEFENSE_PARAMS, defense_hooks, defense_params
from .device import resolve_device
from .errors import PstFastError
from .metrics.record import SALRecord, SALRecorder, record_meta
from .metrics.sal import SALConfig, make_sal_data, parse_sal_config, reference_loss, sal_epoch
from .models.registry import resolution_warning
from .options import identity as option_identity, named_args
from .training.config import TrainConfig
from .training.hooks import Hooks
from .training.inputs import build_model, make_loaders, splits
from .training.lookahead import Lookahead
from .training.loop import fit
from .training.optim import block_param_groups, freeze_first_block_after, make_optimizer
from .training.protocols import with_protocol
from .training.rundir import RunDir, load_checkpoint


@dataclass(frozen=True)
class RunSpec:
    """A run's options, parsed once: ``cfg`` (flat, checked, protocol applied), the defense's typed parameters (None for
    a defense without any) and the SAL settings (None: no SAL)."""

    cfg: TrainConfig
    defense_params: object | None
    sal: SALConfig | None


def resolve(cfg: TrainConfig | None = None, **options) -> RunSpec:
    """``cfg`` (default: the defaults) with ``options`` applied — a ``protocol`` among them fills in its preset where the
    others do not say — every option checked, and the defense's and SAL's arguments parsed into their dataclasses."""
    cfg = dataclasses.replace(cfg or TrainConfig(), **with_protocol(options)).validate()
    return RunSpec(cfg, defense_params(cfg.defense, cfg.defense_args), parse_sal_config(cfg.sal, cfg.sal_args) if cfg.sal else None)


def identity(cfg: TrainConfig) -> dict:
    """The options that determine a run's computation (compared when a run directory is reused; a sweep cell's name),
    with the defense's and SAL's parameters whose default changed after records were first named
    (:func:`pst_fast.options.named_args`)."""
    named = {"defense_params": named_args(cfg.defense_args, DEFENSE_PARAMS[cfg.defense], "--defense-args")
             if cfg.defense in DEFENSE_PARAMS else {},
             "sal_params": named_args(cfg.sal_args, SALConfig, "--sal-args") if cfg.sal else {}}
    return option_identity(cfg, cfg.VOLATILE) | {k: v for k, v in named.items() if v}


def train(cfg: TrainConfig | None = None, hooks: Hooks | None = None, **options) -> dict:
    """Train ``cfg.model`` on ``cfg.data`` (``options`` override fields of ``cfg``, see :func:`resolve`); ``hooks`` add
    to the defense's. Returns the summary (also written to ``cfg.out``/summary.json); a finished run is only read."""
    spec = resolve(cfg, **options)
    cfg = spec.cfg
    device = resolve_device(cfg.device)
    run = RunDir(cfg.out, cfg)
    run.check(identity)
    if run.finished:
        return run.summary()
    hooks = defense_hooks(cfg.defense, spec.defense_params, cfg).merged(hooks or Hooks())
    train_ds, test_ds = splits(cfg, needs_arrays=f"--defense {cfg.defense}" if hooks.prepare_train is not None else "")
    if hooks.prepare_train is not None:
        train_ds = hooks.prepare_train(train_ds)
    run.check_data(train_ds, test_ds)
    model, channels_last = build_model(cfg, train_ds.num_classes, device, train_ds)
    opt = (hooks.make_optimizer or make_optimizer)((hooks.param_groups or block_param_groups)(model, cfg), cfg)
    loader, test_loader = make_loaders(cfg, train_ds, test_ds, "channels_last" if channels_last else "nchw", device)
    if len(loader) == 0:
        raise PstFastError(f"--batch-size {cfg.batch_size}: larger than the training set ({len(train_ds)} images)")
    if train_ds.in_place:
        _describe_folder(cfg, train_ds, test_ds, loader, model)
    run.create(train_ds, test_ds)
    if spec.sal is not None:
        hooks.on_epoch_end.append(SALRecorder(spec.sal, cfg, train_ds, test_ds, run.path, run.resume_point()[0], layout=loader.layout,
                                              device=device))
    if cfg.stem_epochs:
        hooks.on_epoch_end.append(freeze_first_block_after(cfg.stem_epochs))
    if cfg.lookahead:
        lookahead = Lookahead()
        hooks.on_step.append(lookahead)
        hooks.stateful["lookahead"] = lookahead
    if cfg.tensorboard:  # last, so that it sees the fields the other hooks add to the line
        from .tensorboard import TensorBoardLog

        hooks.on_epoch_end.append(TensorBoardLog(cfg.tensorboard, run.path, run.metrics()))
    return fit(cfg, model, opt, loader, test_loader, hooks, run, train_ds)


def _describe_folder(cfg: TrainConfig, train_ds, test_ds, loader, model) -> None:
    """What a run reading image files in place reads (one line), and a warning when the model's resolution does not fit the images."""
    if not cfg.quiet:
        skipped = len(train_ds.skipped) + len(test_ds.skipped)
        tqdm.write(f"data: ImageFolder {cfg.data}: {len(train_ds)} train / {len(test_ds)} test images, {train_ds.num_classes} classes"
                   f"{f', {skipped} unreadable images skipped' if skipped else ''}, {loader.image_size} px; loader: {loader.describe()}")
    if warning := resolution_warning(cfg.model, model.default_image_size, loader.image_size):
        print(f"pst-fast: warning: {warning}", file=sys.stderr)


def run_config(run_dir: str | Path) -> TrainConfig:
    """The TrainConfig a run directory was trained with (its config.json)."""
    f = Path(run_dir) / "config.json"
    try:
        return TrainConfig.from_dict(json.loads(f.read_text())["train"])
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        raise PstFastError(f"{f}: not a pst_fast run config (expected the run directory of 'pst-fast train --out')") from None


def measure_sal(run_dir: str | Path, scfg: SALConfig, out: str | Path | None = None, device: str = "auto", quiet: bool = False) -> SALRecord:
    """SAL after training, from the per-epoch weights a run kept (``--keep-checkpoints``), with the run's own data,
    defense-prepared training split, augmentation, seed and logged losses: the numbers ``train --sal`` would have
    produced for those epochs. Saved after every epoch in ``out`` (default: the run); epochs already there are skipped."""
    from .metrics.plot import plot_sal

    run_dir = Path(run_dir)
    spec = resolve(run_config(run_dir))
    cfg = spec.cfg
    run = RunDir(run_dir, cfg)
    logged = {l["epoch"]: l for l in run.metrics()}
    epochs = [e for e in sorted(logged) if scfg.measures(e, cfg.epochs) and run.epoch_weights(e).is_file()]
    if not epochs:
        raise PstFastError(f"{run_dir}: no kept weights for the epochs SAL measures (every={scfg.every}); train with --keep-checkpoints")
    dev = resolve_device(device)
    train_ds, test_ds = splits(cfg, needs_arrays="SAL of a finished run")
    prepare = defense_hooks(cfg.defense, spec.defense_params, cfg).prepare_train
    if prepare is not None:
        train_ds = prepare(train_ds)
    model, channels_last = build_model(cfg, train_ds.num_classes, dev)
    layout = "channels_last" if channels_last else "nchw"
    out = Path(out) if out else run_dir
    meta = record_meta(scfg, cfg, train_ds)
    record = SALRecord.load(out) if (out / "sal.npz").is_file() else SALRecord([], meta)
    if record.meta != meta:
        raise PstFastError(f"{out}/sal.json: holds SAL measured with other settings or of another run; choose another --out")
    for e in tqdm(epochs, desc=f"SAL ({scfg.mode}) of {run_dir.name}", unit="epoch", disable=quiet):
        if e in record.epochs:
            continue
        model.load_state_dict(load_checkpoint(run.epoch_weights(e)))
        l0, smoothing = reference_loss(scfg, cfg, logged[e])
        record.add(e, sal_epoch(model, make_sal_data(scfg, cfg, train_ds, test_ds, e, layout=layout, device=dev), scfg, l0, smoothing))
        record.save(out)
    plot_sal(record, out / "sal.png")
    return record
