"""PST detector study: the detectors' values over the first steps of standard training, on clean data and poisons, at any
dataset size and model, and whether and when each would fire.

Every run is ``pst-fast train --defense pst --defense-args dry_run=true,window=0`` (standard training; every detector
pass of the whole run is measured and recorded, nothing is held) for ``--steps`` optimizer steps, in OUT/<data>/<model>/s<seed>/ (a normal
run directory: an interrupted study resumes, finished runs are not repeated). The table then replays each
candidate rule on the recorded trace: ``shortcut`` (the default: the quorum-th largest accuracy gap between the probe and its
gray / JPEG / blur views, quorum 2 within PST's default window of 1,000 steps and over the whole run; quorum 1
and 3), ``train-acc`` (the training accuracy since the last pass; pst_fast's earlier
trigger was train-acc 0.6 within 2 epochs) and ``acm4gap`` of the second block (its ACM minus its largest ACM under the views). A rule
fires at the first of ``patience`` passes in a row at or above its threshold; the cell shows that step and its epoch, or
the largest value seen when it never fired (``max .xx``). Clean data must never fire; every poison should.

Usage (``--table-only`` tabulates what OUT holds):
  python benchmarks/pst_detector.py --data clean=cifar10-mini,em=poisons/em,lsp=poisons/lsp --models fastnet,resnet18 \\
      --seeds 0,1 --steps 300 --out runs/detector [--amp on]
OUT/detector.md holds the table; OUT/detector.png plots the default detector's value per step, a panel per model and
size, a line per dataset and seed.
"""
import argparse
import json
from pathlib import Path

from pst_fast.figures import pyplot, save_png
from pst_fast.io import atomic_write_text
from pst_fast.run import train

WINDOW = 1000  # PST's default window: detector passes in the first WINDOW steps (of a run with no hold yet)
RULES = {  # name -> (trace key or callable, threshold[, window in steps]); patience is the study's
    "shortcut q2 ≥ 0.3, first 1000 steps (default)": ("shortcut", 0.3, WINDOW),
    "shortcut q2 ≥ 0.3, whole run": ("shortcut", 0.3),
    "shortcut q1 ≥ 0.3": (lambda t: max(t["acc"] - t[k] for k in t if k.startswith("acc/")), 0.3),
    "shortcut q3 ≥ 0.3": (lambda t: min(t["acc"] - t[k] for k in t if k.startswith("acc/")), 0.3),
    "train-acc ≥ 0.6": ("train-acc", 0.6),
    "acm4gap of block 2 ≥ 0.05": (lambda t: [v for k, v in t.items() if k.startswith("acm4gap/")][1], 0.05),  # fastnet s1, ResNet layer1
}


def parse_pairs(text: str) -> dict[str, str]:
    pairs = dict(item.split("=", 1) for item in filter(None, (s.strip() for s in text.split(","))))
    return {k.strip(): v.strip() for k, v in pairs.items()}


def run_dir(out: Path, data: str, model: str, seed: int) -> Path:
    return out / data / model / f"s{seed}"


def fires(trace: list[dict], key, threshold: float, patience: int, window: int = 0) -> tuple[int | None, float]:
    """(the step at which the rule fires, or None; the largest value seen), on the passes of the first ``window`` steps (0: all)."""
    streak, top = 0, float("-inf")
    for t in trace:
        if window and t["step"] > window:
            break
        value = key(t) if callable(key) else t.get(key)
        if value is None:
            continue
        top = max(top, value)
        streak = streak + 1 if value >= threshold else 0
        if streak >= patience:
            return t["step"], top
    return None, top


def table(out: Path, data: dict, models: list[str], seeds: list[int], patience: int) -> str:
    rows = [f"| data | model | seed | images | steps/epoch | {' | '.join(RULES)} |", "|---" * (5 + len(RULES)) + "|"]
    for name in data:
        for model in models:
            for seed in seeds:
                f = run_dir(out, name, model, seed) / "pst.json"
                if not f.is_file():
                    continue
                state = json.loads(f.read_text())
                trace = state["trace"]
                per_epoch = state.get("steps_per_epoch") or 1
                cells = []
                for key, threshold, *window in RULES.values():
                    step, top = fires(trace, key, threshold, patience, *window)
                    cells.append(f"**{step}** (ep {step / per_epoch:.2f})" if step is not None else f"— (max {top:.2f})")
                rows.append(f"| {name} | {model} | {seed} | {state.get('train_images', '?')} | {per_epoch} | {' | '.join(cells)} |")
    return "\n".join(rows) + "\n"


def plot(out: Path, data: dict, models: list[str], seeds: list[int]) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        for i, name in enumerate(data):
            for seed in seeds:
                f = run_dir(out, name, model, seed) / "pst.json"
                if f.is_file():
                    trace = json.loads(f.read_text())["trace"]
                    ax.plot([t["step"] for t in trace], [t["shortcut"] for t in trace], color=plt.cm.tab20(i % 20), lw=1.2,
                            ls="-" if seed == seeds[0] else "--", label=name if seed == seeds[0] else None)
        ax.axhline(RULES["shortcut q2 ≥ 0.3, whole run"][1], color="k", ls=":", lw=1)
        ax.axvline(WINDOW, color="k", ls="--", lw=0.8)
        ax.set_title(model), ax.set_xlabel("optimizer step (log scale)"), ax.set_ylabel("shortcut (accuracy points)"), ax.grid(alpha=0.3)
        ax.set_xscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "detector.png"
    save_png(fig, path, tight=False)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="NAME=DATASET pairs, comma-separated (clean data and poisons)")
    ap.add_argument("--models", default="fastnet")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--steps", type=int, default=300, help="optimizer steps per run (detection needs the first epochs)")
    ap.add_argument("--epochs", type=int, default=15, help="the schedule's length (warm-up and cosine), as in a full run")
    ap.add_argument("--patience", type=int, default=2, help="passes in a row at or above a threshold that fire a rule")
    ap.add_argument("--amp", default="on", help="bf16 autocast: on or off (on: faster on a CPU with AVX512-BF16, same accuracy, docs/benchmarks.md)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--table-only", action="store_true")
    a = ap.parse_args()
    data, models, seeds, out = parse_pairs(a.data), a.models.split(","), [int(s) for s in a.seeds.split(",")], Path(a.out)
    if not a.table_only:
        for name, path in data.items():
            for model in models:
                for seed in seeds:
                    d = run_dir(out, name, model, seed)
                    train(data=path, model=model, seed=seed, epochs=a.epochs, max_steps=a.steps, amp=a.amp, quiet=True, out=str(d),
                          defense="pst", defense_args=f"dry_run=true,window=0,patience={a.patience}")
                    print(f"{name} {model} s{seed}: done", flush=True)
    text = table(out, data, models, seeds, a.patience)
    atomic_write_text(out / "detector.md", text)
    print(text)
    print(plot(out, data, models, seeds))


if __name__ == "__main__":
    main()
