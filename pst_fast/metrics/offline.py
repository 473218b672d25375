"""SAL after training: measure a finished (or running) run from the per-epoch weights it kept
(``--keep-checkpoints``), with the run's own data, augmentation, seed and logged training losses —
the same numbers ``train --sal`` would have produced for those epochs. Resumable: epochs already in the
output record are skipped."""
from __future__ import annotations

import json
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import PstFastError
from ..training.config import TrainConfig
from ..training.loop import build_model, load_splits, resolve_device
from ..training.rundir import RunDir, load_checkpoint
from .record import SALRecord, record_meta
from .sal import SALConfig, make_sal_data, reference_loss, sal_epoch


def run_config(run_dir: str | Path) -> TrainConfig:
    f = Path(run_dir) / "config.json"
    try:
        return TrainConfig.from_dict(json.loads(f.read_text())["train"])
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        raise PstFastError(f"{f}: not a pst_fast run config (expected the run directory of 'pst-fast train --out')") from None


def sal_of_run(run_dir: str | Path, scfg: SALConfig, out: str | Path | None = None, device: str = "auto", quiet: bool = False) -> SALRecord:
    """Measure SAL on the kept weights of ``run_dir``; the record is saved (after every epoch) in ``out`` (default: the run)."""
    from ..defenses import defense_hooks

    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    run = RunDir(run_dir, cfg)
    logged = {l["epoch"]: l for l in run.metrics()}
    epochs = [e for e in sorted(logged) if scfg.measures(e, cfg.epochs) and run.epoch_weights(e).is_file()]
    if not epochs:
        raise PstFastError(f"{run_dir}: no kept weights for the epochs SAL measures (every={scfg.every}); train with --keep-checkpoints")
    dev = resolve_device(device)
    train_ds, test_ds = load_splits(cfg)
    prepare = defense_hooks(cfg.defense, cfg).prepare_train
    if prepare is not None:
        train_ds = prepare(train_ds)
    model, channels_last = build_model(cfg, train_ds.num_classes, dev)
    norm = dict(mean=train_ds.meta["mean"], std=train_ds.meta["std"], layout="channels_last" if channels_last else "nchw", device=dev)
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
        res = sal_epoch(model, make_sal_data(scfg, cfg, train_ds, test_ds, e, **norm), scfg, l0, smoothing)
        record.add(e, res)
        record.save(out)
    from .plot import plot_sal

    plot_sal(record, out / "sal.png")
    return record
