"""``pst-fast``: the command line. Every subcommand's options are explained by ``pst-fast CMD --help``."""
from __future__ import annotations

import argparse
import dataclasses
import sys

from .errors import PstFastError
from .options import flag_of, kind, parse
from .text import printable

EPILOG = """examples:
  pst-fast train --data cifar10-mini --model fastnet --out runs/clean
  pst-fast models
  pst-fast data import ../shared/data/cifar10-jpeg.tar.gz --out data/cifar10
  pst-fast data info cifar10-mini
  pst-fast data show cifar10-mini --n 16 --out grid.png
  pst-fast attacks
  pst-fast poison --attack em --data cifar10-mini --out poisons/em
  pst-fast train --data poisons/em --defense pst --out runs/em-pst
  pst-fast defenses
  pst-fast train --data poisons/em --sal --out runs/em          # per-layer SAL after epochs (fast mode)
  pst-fast ud --clean runs/clean --poisoned runs/em             # unlearnable distance from the SAL records
  pst-fast sweep init > spec.toml && pst-fast sweep run spec.toml --db results.db
  pst-fast report results.db --out report
"""


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; each option's default once: not when the help already says it, nor when it is None."""

    def _get_help_string(self, action):
        if action.default is None or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def parsed_as(typ: type):
    """argparse ``type=``: a command-line string as a ``typ`` value by :func:`pst_fast.options.parse` (what ``key=value``
    arguments and sweep specs use)."""
    def convert(text: str):
        try:
            return parse(text, typ)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None
    return convert


def add_dataclass_options(parser: argparse.ArgumentParser, cls) -> None:
    """One ``--option`` per dataclass field, with its type, default, choices and help text."""
    for f in dataclasses.fields(cls):
        flag = flag_of(f.name)
        kw = dict(default=f.default, help=f.metadata.get("help", ""), dest=f.name)
        if f.type in (bool, "bool"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif f.metadata.get("const") is not None:
            choices = f.metadata.get("choices")
            parser.add_argument(flag, nargs="?", const=f.metadata["const"], choices=choices, metavar="{" + ",".join(c for c in choices if c) + "}", **kw)
        else:
            parser.add_argument(flag, type=parsed_as(kind(f)), choices=f.metadata.get("choices"), metavar=f.name.upper() if not f.metadata.get("choices") else None, **kw)


def cmd_train(args) -> None:
    from .run import train
    from .training import TrainConfig

    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    s = train(cfg)
    ev = cfg.eval_split
    print(f"final {ev} acc {s[f'final_{ev}_acc']:.4f}  peak {s[f'peak_{ev}_acc']:.4f} (epoch {s['peak_epoch'] + 1})  "
          f"{s['epochs']} epochs in {s['wall_seconds']:.0f} s, {s['images_per_second']:.0f} img/s")
    if cfg.out and cfg.sal:
        print(f"SAL ({cfg.sal}) per layer and epoch: {cfg.out}/sal.npz, sal.png; UD: pst-fast ud --clean CLEAN_RUN --poisoned {cfg.out}")
    if cfg.out:
        print(f"run directory: {cfg.out}")


def cmd_bench(args) -> None:
    from .bench_suite import markdown, run_suite, write_json
    from .io import atomic_write_text

    peaks, entries = run_suite(args.quick, args.only.split(",") if args.only else None, args.device)
    table = markdown(peaks, entries, args.quick)
    print(table)
    if args.json:
        print(f"json: {write_json(args.json, peaks, entries)}")
    if args.out:
        print(f"table: {atomic_write_text(args.out, table)}")


def cmd_models(args) -> None:
    from .models import list_models, model_info

    print(f"{'model':<20} {'params':>10} {'GFLOPs/img':>11} {'input':>7}  blocks")
    for name in list_models():
        i = model_info(name, num_classes=args.num_classes)
        print(f"{name:<20} {i['params'] / 1e6:>9.2f}M {i['flops_per_image'] / 1e9:>11.3f} {i['image_size']:>5}px  {' '.join(i['blocks'])}")


def cmd_data_import(args) -> None:
    from .data.importers import import_source

    splits = import_source(args.src, args.out, name=args.name, workers=args.workers, on_bad_image="skip" if args.skip_bad else "fail",
                           image_size=args.image_size)
    for split, ds in splits.items():
        print(printable(f"{split}: {len(ds)} images {'x'.join(map(str, ds.shape))}, {ds.num_classes} classes -> {ds.path}"))
        for key, what in (("skipped", "unreadable images skipped"), ("truncated", "truncated JPEGs imported with libjpeg's grey fill")):
            if ds.meta.get(key):
                print(printable(f"warning: {split}: {len(ds.meta[key])} {what} (listed in meta.json '{key}'), e.g. {ds.meta[key][0]}"),
                      file=sys.stderr)


def cmd_data_export(args) -> None:
    from .data.interop import export_png

    out = export_png(args.poison, args.out, layout=args.layout, workers=args.workers)
    print(f"{out}/{'data/<index>.png' if args.layout == 'flat' else '<label>/<index>.png'} and {out}/pst_fast.json")


def cmd_data_import_poison(args) -> None:
    from .data.interop import import_poison

    ds = import_poison(args.src, args.clean, args.out, attack=args.attack, trust_pickle=args.trust_pickle, workers=args.workers)
    delta = "absent (a change does not fit int8)" if ds.delta is None else "per sample"
    print(printable(f"train: {len(ds)} poisoned images {'x'.join(map(str, ds.shape))} of {args.clean} ({ds.meta['source_kind']}), "
                    f"attack {ds.meta['attack']}, delta.npy {delta} -> {ds.path.parent}"))


def cmd_data_info(args) -> None:
    from . import data
    from .data.grid import info_text

    for split in args.split:
        print(info_text(data.load(args.data, split, verify=False)))


def cmd_data_show(args) -> None:
    from . import data
    from .data.grid import save_preview

    save_preview(data.load(args.data, args.split, verify=False), args.out, args.n)
    print(args.out)


def cmd_attacks(args) -> None:
    from .attacks import ATTACKS

    for spec in ATTACKS.values():
        defaults = ", ".join(f"{f.name}={f.default:.5g}" if isinstance(f.default, float) else f"{f.name}={f.default}" for f in dataclasses.fields(spec.params))
        print(f"{spec.name:<13} {spec.norm:<5} {spec.summary}  [{spec.reference}]\n{'':<19} defaults: {defaults}"
              + (f"\n{'':<19} fidelity: {spec.fidelity}" if spec.fidelity else ""))
    print("\ndocs/fidelity.md compares every attack, defense and metric with its official code")


def cmd_defenses(args) -> None:
    from .defenses import DEFENSE_PARAMS, DEFENSES

    if args.gallery:
        import numpy as np

        from . import data
        from .data.grid import save_grid
        from .defenses.transforms import gallery

        ds = data.load(args.data, "train", verify=False)
        rows = np.linspace(0, len(ds) - 1, 8).round().astype(np.int64)
        images, names = gallery(np.asarray(ds.images[rows]))
        save_grid(images, args.gallery, nrow=len(rows), labels=np.repeat(np.arange(len(names)), len(rows)), class_names=names)
        print(args.gallery)
        return

    for name, build in DEFENSES.items():
        print(f"{name:<14} {(build.__doc__ or '').strip().splitlines()[0]}")
        for f in (dataclasses.fields(DEFENSE_PARAMS[name]) if name in DEFENSE_PARAMS else ()):
            print(f"{'':<16}{f.name}={f.default}  {f.metadata.get('help', '')}")
    print("\npass parameters as --defense-args 'key=value,key=value'")


def sal_knobs() -> str:
    from .metrics.sal import MODE_DEFAULTS, SALConfig

    lines = [f"  {f.name}={f.default}  {f.metadata['help']}" for f in dataclasses.fields(SALConfig) if f.name != "mode"]
    modes = "; ".join(f"{m}: " + ", ".join(f"{k}={v}" for k, v in d.items()) for m, d in MODE_DEFAULTS.items())
    return "SAL knobs (--sal-args 'key=value,...'):\n" + "\n".join(lines) + f"\nmode defaults: {modes} (subset 0 = every image)"


def cmd_sal(args) -> None:
    from .metrics.sal import parse_sal_config
    from .run import measure_sal

    rec = measure_sal(args.run, parse_sal_config(args.sal, args.sal_args), out=args.out, device=args.device, quiet=args.quiet)
    out = args.out or args.run
    print(f"SAL ({args.sal}) of {len(rec.layers)} layers after epochs {', '.join(str(e + 1) for e in rec.epochs)}: "
          f"{sum(rec.arrays['seconds'][i].item() for i in range(len(rec.epochs))):.0f} s of compute -> {out}/sal.npz, sal.json, sal.png")


def cmd_ud(args) -> None:
    import json
    from pathlib import Path

    from .metrics.plot import plot_sal_grid, plot_ud
    from .metrics.record import SALRecord
    from .metrics.ud import unlearnable_distance

    rep = unlearnable_distance(args.clean, args.poisoned, args.reference)
    out = Path(args.out)
    records = [SALRecord.load(c) for c in args.clean] + [SALRecord.load(p) for p in args.poisoned]
    names = [Path(c).name + " (clean)" for c in args.clean] + [Path(p).name for p in args.poisoned]
    heat = plot_sal_grid(records, names, out / "sal-heatmap.png", beta=rep["beta"])
    bars = plot_ud(rep, out / "ud.png")
    if args.json:
        print(json.dumps(rep, indent=1))
        return
    print(f"β per clean run: 2-means midpoint of its per-layer SAL, mean over epochs {rep['epochs']}; each run is compared with "
          f"the clean run {'of its own defense' if args.reference == 'same-defense' else 'of standard training'}")
    print(f"{'run':<28} {'data':<28} {'defense':<12} {'β':>7} {'#LP':>6} {'UD':>7}")
    for c, rec in zip(rep["cleans"], records):
        print(f"{Path(c['run']).name + ' (clean)':<28} {str(rec.meta.get('data'))[-28:]:<28} {rec.meta.get('defense', 'standard'):<12} "
              f"{c['beta']:>7.4g} {c['lp']:>6.2f} {1.0:>7.3f}")
    for r in rep["runs"]:
        print(f"{Path(r['run']).name:<28} {str(r['data'])[-28:]:<28} {r['defense']:<12} {r['beta']:>7.4g} {r['lp']:>6.2f} {r['ud']:>7.3f}")
    print("#LP: mean number of layers with SAL > β per measured epoch; UD = Σλ / Σλ_clean (1 = clean, lower = more unlearnable)")
    print(f"wrote {heat} and {bars}")


def cmd_sweep_init(args) -> None:
    from .sweep import EXAMPLE_SPEC

    sys.stdout.write(EXAMPLE_SPEC.read_text())


def cmd_sweep_plan(args) -> None:
    from .sweep import expand, load_spec, plan_text

    spec = load_spec(args.spec)
    print(plan_text(spec, expand(spec)))


def cmd_sweep_run(args) -> None:
    from .sweep import expand, intro_text, load_spec
    from .sweep.report import status_table
    from .sweep.run import fail_if_cells_failed, run_sweep

    spec = load_spec(args.spec)
    print(intro_text(spec, expand(spec)))
    store = run_sweep(spec, args.db, workdir=args.workdir, workers=args.workers, retry_failed=args.retry_failed,
                      executor=args.executor, address=args.address, tensorboard=args.tensorboard, wait=args.wait)
    rows = store.cells()
    print(status_table(rows))
    print(f"{sum(r['status'] == 'done' for r in rows)}/{len(rows)} cells done; results in {args.db}")
    fail_if_cells_failed(rows, args.db)



def print_report(db: str, out: str) -> None:
    """Write the report of ``db`` to ``out``; print its table, then the page's path (last)."""
    from .sweep.report import markdown, records, write_report
    from .sweep.store import Store

    page = write_report(db, out)
    print(markdown(records(Store(db)), f"Sweep report: {db}"))
    print(f"report: {page}")


def cmd_quickstart(args) -> None:
    from .sweep import QUICKSTART_SPEC, expand, intro_text, load_spec
    from .sweep.run import fail_if_cells_failed, run_sweep
    from .sweep.spec import with_amp

    spec = with_amp(load_spec(QUICKSTART_SPEC), args.amp)
    suffix = "" if args.amp == "auto" else f"-amp-{args.amp}"
    args.db, args.out = args.db or f"quickstart{suffix}.db", args.out or f"quickstart{suffix}-report"
    print("pst_fast quickstart: what an unlearnable-examples poison does to training, and what defends against it.")
    print(intro_text(spec, expand(spec)))
    print(f"Results go to {args.db}; re-running the same command resumes (its run time: docs/sweeps.md).\n")
    store = run_sweep(spec, args.db, retry_failed=True)
    print_report(args.db, args.out)
    fail_if_cells_failed(store.cells(), args.db)



def cmd_report(args) -> None:
    from pathlib import Path

    from .sweep.report import dumps

    if not Path(args.db).is_file():
        raise PstFastError(f"{args.db}: no such results database (written by 'pst-fast sweep run --db')")
    if args.format in ("csv", "json"):
        sys.stdout.write(dumps(args.db, args.format))
    else:
        print_report(args.db, args.out)
    if args.tensorboard:
        from .sweep.report import export_tensorboard

        runs = export_tensorboard(args.db, args.tensorboard)
        note = sys.stdout if args.format == "html" else sys.stderr  # csv and json own stdout
        print(f"TensorBoard: {len(runs)} runs in {args.tensorboard} (tensorboard --logdir {args.tensorboard})", file=note)


def attack_parser(name: str) -> argparse.ArgumentParser:
    from .attacks import get_attack

    spec = get_attack(name)
    p = argparse.ArgumentParser(prog=f"pst-fast poison --attack {name}", formatter_class=Formatter,
                                description=f"{spec.summary} [{spec.reference}]; norm {spec.norm}", epilog=spec.fidelity or None)
    add_dataclass_options(p, spec.params)
    return p


def cmd_poison(args, rest: list[str]) -> None:
    from .attacks import get_attack, poison

    spec = get_attack(args.attack)
    if args.attack_help:
        attack_parser(args.attack).print_help()
        return
    if not args.out:
        raise PstFastError("poison: --out DIR is required (the directory the poisoned dataset is written to)")
    ns = attack_parser(args.attack).parse_args(rest)
    overrides = {f.name: getattr(ns, f.name) for f in dataclasses.fields(spec.params) if getattr(ns, f.name) != f.default}
    from .device import resolve_device

    s = poison(args.attack, args.data, args.out, seed=args.seed, device=str(resolve_device(args.device)), image_size=args.image_size,
               **overrides)
    print(f"{s['attack']}: wrote {s['out']} in {s['seconds']:.0f} s" + (f" ({s['rounds']} rounds, stopped by {s['stopped']})" if "rounds" in s else ""))


def protocol_epilog() -> str:
    from .training.protocols import PROTOCOLS, describe

    return "protocols (--protocol NAME; explicit options override them):\n" + "\n".join(f"  {n}: {describe(n)}" for n in PROTOCOLS)


def build_parser(protocol: str = "") -> argparse.ArgumentParser:
    """The whole command line; ``protocol``: the train options' defaults are that preset's (explicit options override it)."""
    from . import __version__
    from .training import TrainConfig
    from .training.protocols import with_protocol

    p = argparse.ArgumentParser(prog="pst-fast", description="pst_fast: unlearnable-example attacks, defenses and metrics, fast.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"pst_fast {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    t = sub.add_parser("train", help="train a model (clean or poisoned data, any defense) and record the run",
                       formatter_class=Formatter, description="Train a model; evaluates clean test accuracy every epoch and records "
                       "config.json, metrics.jsonl, checkpoint.pt, model.pt, curves.png and summary.json in --out (with --sal also sal.npz, "
                       "sal.json and sal.png). "
                       "Re-running the same command resumes a killed run.", epilog=protocol_epilog())
    add_dataclass_options(t, TrainConfig)
    t.set_defaults(func=cmd_train, **with_protocol({"protocol": protocol}))

    po = sub.add_parser("poison", help="generate an unlearnable version of a dataset (see 'pst-fast attacks')", formatter_class=Formatter,
                        description="Generate a poisoned dataset: OUT/train is the poisoned training split, OUT/test the clean test split. "
                        "Attack parameters are options too: 'pst-fast poison --attack em --attack-help' lists them.")
    po.add_argument("--attack", required=True, help="attack name ('pst-fast attacks' lists them)")
    po.add_argument("--data", default="cifar10-mini", help="clean dataset: registered name or directory; an ImageFolder tree "
                    "(em, em-class and the model-free attacks lsp, ops, ar, cuda, random, random-class, region) gives a poison "
                    "directory for 'train --data TREE --poison OUT'")
    po.add_argument("--image-size", type=int, default=0, help="ImageFolder tree: the training resolution of δ in px (0 = native)")
    po.add_argument("--out", help="output directory (must not exist); required unless --attack-help")
    po.add_argument("--seed", type=int, default=0, help="seed of every random draw of the attack")
    po.add_argument("--device", default="auto", help="cpu, cuda or auto")
    po.add_argument("--attack-help", action="store_true", help="list this attack's parameters and defaults")
    po.set_defaults(func=cmd_poison, takes_rest=True)

    at = sub.add_parser("attacks", help="list attacks with their norms, budgets and defaults", formatter_class=Formatter)
    at.set_defaults(func=cmd_attacks)

    de = sub.add_parser("defenses", help="list training-time defenses and their --defense-args parameters", formatter_class=Formatter)
    de.add_argument("--gallery", metavar="PNG", help="instead: write a picture of every defense transform applied to 8 training images")
    de.add_argument("--data", default="cifar10-mini", help="dataset of the --gallery images")
    de.set_defaults(func=cmd_defenses)

    sa = sub.add_parser("sal", help="measure per-layer SAL of a run afterwards, from its kept per-epoch weights", formatter_class=Formatter,
                        description="Measure SAL (sharpness-aware learnability, Ye et al. ICLR 2025) on the weights a run kept with "
                        "--keep-checkpoints, with the run's data, augmentation, seed and logged losses. Writes sal.npz, sal.json and "
                        "sal.png to --out (default: the run directory); re-running resumes.", epilog=sal_knobs())
    sa.add_argument("run", help="run directory of 'pst-fast train --out'")
    sa.add_argument("--sal", default="fast", choices=["fast", "exact"], help="fast (the documented fast knobs) or exact (the definition)")
    sa.add_argument("--sal-args", default="", help="knob overrides, key=value,... (listed below)")
    sa.add_argument("--out", default=None, help="directory of the record (default: the run directory)")
    sa.add_argument("--device", default="auto", help="cpu, cuda or auto")
    sa.add_argument("--quiet", action="store_true", help="no progress bar")
    sa.set_defaults(func=cmd_sal)

    u = sub.add_parser("ud", help="unlearnable distance of poisoned runs against a clean run (from their SAL records)", formatter_class=Formatter,
                       description="UD = Σ_t λ_poisoned(t) / Σ_t λ_clean(t), λ(t) = number of layers whose SAL exceeds β, β = the clean run's "
                       "mean per-epoch 2-means midpoint. Each run is compared with the clean run trained with the same defense (as the "
                       "official get_ud.py), or with --reference standard the clean run of standard training. Runs must share model, "
                       "epochs, SAL settings and layers; the clean run must be clean. Writes a SAL heatmap (layers × epochs per run) "
                       "and a UD bar chart to --out.")
    u.add_argument("--clean", required=True, nargs="+", help="run directories (or SAL record directories) of the clean reference runs")
    u.add_argument("--reference", default="same-defense", choices=["same-defense", "standard"],
                   help="which clean run each run is compared with: the one trained with its defense (official), or standard training's")
    u.add_argument("--poisoned", required=True, nargs="+", help="run directories to compare (a second clean seed is fine: UD ≈ 1)")
    u.add_argument("--out", default="ud", help="directory for sal-heatmap.png and ud.png")
    u.add_argument("--json", action="store_true", help='print {"beta": ..., "runs": [{"run", "lp", "ud", ...}]} instead of the table')
    u.set_defaults(func=cmd_ud)

    sw = sub.add_parser("sweep", help="grids of attacks × defenses × models × seeds from a TOML spec").add_subparsers(
        dest="sweep_command", metavar="ACTION", required=True)
    si = sw.add_parser("init", help="print a commented example spec (pst-fast sweep init > spec.toml)", formatter_class=Formatter)
    si.set_defaults(func=cmd_sweep_init)
    sp = sw.add_parser("plan", help="check a spec and print its cells, each with the poison and clean reference it reuses",
                       formatter_class=Formatter, description="Every error names the spec's line and key; nothing runs.")
    sp.add_argument("spec", help="TOML sweep spec")
    sp.set_defaults(func=cmd_sweep_plan)
    sr = sw.add_parser("run", help="run a spec's unfinished cells and record them in SQLite (re-run to resume)", formatter_class=Formatter,
                       description="Generates each poison once, trains every cell in worker processes and writes results to --db as "
                       "they finish. Killed at any point, the same command continues: finished cells are kept, a half-finished "
                       "cell resumes from its last checkpoint.")
    sr.add_argument("spec", help="TOML sweep spec")
    sr.add_argument("--db", required=True, help="SQLite results database (created if missing)")
    sr.add_argument("--workdir", default=None, help="where poisons and run directories go (default: next to --db, DB-NAME-runs/)")
    sr.add_argument("--workers", type=int, default=None, help="local worker processes (default: [resources] workers of the spec, else one per GPU, else CPU cores / threads)")
    sr.add_argument("--retry-failed", action="store_true", help="also rerun cells that failed before")
    sr.add_argument("--executor", default="local", choices=["local", "ray"], help="local worker processes, or tasks on a Ray cluster")
    sr.add_argument("--address", default=None, help="Ray cluster address: auto or HOST:PORT (default: start a local Ray instance)")
    sr.add_argument("--tensorboard", default=None, metavar="DIR", help="also write TensorBoard event files of every cell trained "
                    "now, live, to DIR/DATASET/ATTACK/DEFENSE/MODEL/seedN ('pst-fast report DB --tensorboard DIR' exports finished ones)")
    sr.add_argument("--wait", action="store_true", help="if another 'sweep run' is using --db, wait for it to finish instead of failing")
    sr.set_defaults(func=cmd_sweep_run)

    qs = sub.add_parser("quickstart", help="the built-in demo sweep: EM and LSP poisons × standard, PST and ISS-JPEG training, with UD",
                        formatter_class=Formatter, description="Runs the built-in spec (pst_fast/sweep/quickstart.toml; 'pst-fast sweep init' "
                        "explains the format) on the embedded cifar10-mini, prints the attack × defense table and writes the report. "
                        "Re-running resumes a killed run; docs/sweeps.md has its measured run time.")
    qs.add_argument("--db", default=None, help="SQLite results database (default: quickstart.db, or quickstart-amp-on.db with --amp on)")
    qs.add_argument("--out", default=None, help="report directory (default: quickstart-report, or quickstart-amp-on-report)")
    qs.add_argument("--amp", default="auto", choices=["auto", "on", "off"],
                    help="bf16 autocast of training and of EM's surrogate: auto keeps the spec (float32 on CPU, bf16 on CUDA); "
                         "on is faster on a CPU with AVX512-BF16 (SAL stays float32; measured: docs/sweeps.md) and gives its own database and report")
    qs.set_defaults(func=cmd_quickstart)

    rp = sub.add_parser("report", help="tables and plots of a sweep database (a static HTML site + Markdown, or CSV/JSON records)",
                        formatter_class=Formatter,
                        description="Writes a static site to --out (open report.html from disk: the attack × defense table, "
                        "sortable and filterable, each entry linking to its cell's page with curves, SAL and UD, PST's detector "
                        "trace and the poison's preview), plus report.md, grid.png and curves.png; with --format csv|json prints "
                        "one record per cell instead. Unfinished cells are marked.")
    rp.add_argument("db", help="SQLite results database of 'pst-fast sweep run'")
    rp.add_argument("--out", default="report", help="directory of the report")
    rp.add_argument("--format", default="html", choices=["html", "csv", "json"], help="html: the site and report.md; csv/json: records on stdout")
    rp.add_argument("--tensorboard", default=None, metavar="DIR", help="also export every cell's per-epoch metrics as TensorBoard "
                    "event files to DIR/DATASET/ATTACK/DEFENSE/MODEL/seedN (tensorboard --logdir DIR)")
    rp.set_defaults(func=cmd_report)

    b = sub.add_parser("bench", help="the throughput benchmark suite: pst_fast against same-run eager baselines and the machine's peaks",
                       formatter_class=Formatter, description="Measures the float32 and bfloat16 matmul peaks and the copy bandwidth, then each benchmark "
                       "of benchmarks/ (augment, pgd_step, em_round, train_step_compiled, train_step_frozen_prefix, sal_epoch, loader): "
                       "pst_fast's rate, the eager baseline measured in the same run, the ratio (refused when the spreads overlap the "
                       "difference) and the fraction of the peak.")
    b.add_argument("--quick", action="store_true", help="smaller problems and fewer repeats (its run time: docs/benchmarks.md)")
    b.add_argument("--json", default=None, help="also write the entries to this JSON file (a list of {name, value, unit, baseline, ratio, peak_fraction, ...})")
    b.add_argument("--out", default=None, help="also write the Markdown table to this file")
    b.add_argument("--only", default=None, help="comma-separated subset of the benchmarks")
    b.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when available; its figures use CUDA events)")
    b.set_defaults(func=cmd_bench)

    m = sub.add_parser("models", help="list registered models with parameter counts and FLOPs per image", formatter_class=Formatter)
    m.add_argument("--num-classes", type=int, default=10, help="classes of the head used for the counts")
    m.set_defaults(func=cmd_models)

    d = sub.add_parser("data", help="import, inspect and view datasets").add_subparsers(dest="data_command", metavar="ACTION", required=True)
    di = d.add_parser("import", help="convert an image folder / tar / CIFAR batches / npz into the canonical format", formatter_class=Formatter)
    di.add_argument("src", help="ImageFolder dir, .tar/.tar.gz of one, CIFAR-10/100 python batches (dir or .tar.gz), SVHN "
                    "train_32x32.mat/test_32x32.mat (a dir of them or one file), or .npz with x/y")
    di.add_argument("--out", required=True, help="output directory (must not exist); gets train/ and test/")
    di.add_argument("--name", default=None, help="dataset name recorded in meta.json (default: the source's name)")
    di.add_argument("--workers", type=int, default=None, help="decoding threads (default: all cores)")
    di.add_argument("--skip-bad", action="store_true", help="skip (and count) unreadable images instead of failing")
    di.add_argument("--image-size", type=int, default=0, help="image folders: store the centred square of each image's short side "
                    "resized to S x S (bilinear, antialiased), e.g. 32 or 64 for an ImageNet-mini; 0 = the images' own size, which must agree")
    di.set_defaults(func=cmd_data_import)
    dx = d.add_parser("export", help="write a poison's training images as the per-index PNG folder APBench and the UD code read",
                      formatter_class=Formatter, description="OUT/data/<index>.png (flat: APBench's CIFAR/SVHN layout) or "
                      "OUT/<label>/<index>.png (class: its ImageNet-100 layout), lossless, plus OUT/pst_fast.json (labels, "
                      "checksums, the poison's meta) so that 'pst-fast data import-poison' restores the poison bit for bit.")
    dx.add_argument("poison", help="registered name or dataset directory (its train split is exported)")
    dx.add_argument("--format", default="png", choices=["png"], help="file format of the images")
    dx.add_argument("--layout", default="flat", choices=["flat", "class"], help="flat: OUT/data/<index>.png; class: OUT/<label>/<index>.png")
    dx.add_argument("--out", required=True, help="output directory (must not exist)")
    dx.add_argument("--workers", type=int, default=None, help="encoding threads (default: all cores, at most 8)")
    dx.set_defaults(func=cmd_data_export)
    dp = d.add_parser("import-poison", help="a poison made elsewhere (APBench/UD PNG folder, EM .pt, REM .pkl) -> canonical poison of --clean",
                      formatter_class=Formatter, description="SRC is a PNG folder of 'pst-fast data export' or APBench "
                      "(labels checked against --clean), an EM perturbation.pt (float (N|K, C, H, W) in [0, 1] pixel units, "
                      "read with torch.load(weights_only=True)) or a REM -def-noise.pkl (int8 pixels; a pickle, read only with "
                      "--trust-pickle). Writes OUT/train (poisoned, δ = poisoned - clean) and OUT/test (the clean test split).")
    dp.add_argument("src", help="PNG folder, EM .pt file or REM .pkl file")
    dp.add_argument("--clean", required=True, help="the clean dataset the poison was made from: registered name or directory")
    dp.add_argument("--out", required=True, help="output directory (must not exist)")
    dp.add_argument("--attack", default=None, help="attack name recorded in meta.json (default: the exported poison's, else 'external')")
    dp.add_argument("--trust-pickle", action="store_true", help="allow unpickling SRC (can run arbitrary code: only for files you trust)")
    dp.add_argument("--workers", type=int, default=None, help="PNG decoding threads (default: all cores, at most 8)")
    dp.set_defaults(func=cmd_data_import_poison)
    dn = d.add_parser("info", help="shape, classes, per-class counts, checksum status", formatter_class=Formatter)
    dn.add_argument("data", help="registered name or dataset directory")
    dn.add_argument("--split", nargs="+", default=["train", "test"], choices=["train", "test"], help="splits to describe")
    dn.set_defaults(func=cmd_data_info)
    ds = d.add_parser("show", help="write a PNG grid of images (poisons: clean | poisoned | amplified delta)", formatter_class=Formatter)
    ds.add_argument("data", help="registered name or dataset directory")
    ds.add_argument("--n", type=int, default=16, help="number of images")
    ds.add_argument("--split", default="train", choices=["train", "test"], help="which split")
    ds.add_argument("--out", default="grid.png", help="PNG file to write")
    ds.set_defaults(func=cmd_data_show)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if getattr(args, "protocol", ""):  # a preset: its values become the train defaults that explicit options override
        parser = build_parser(args.protocol)
        args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "takes_rest", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        args.func(args, rest) if getattr(args, "takes_rest", False) else args.func(args)
    except PstFastError as e:
        print(f"pst-fast: error: {printable(e)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("pst-fast: interrupted (finished epochs are saved; re-run the same command to resume)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
