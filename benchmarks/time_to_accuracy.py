"""Time and training compute to reach target test accuracies: a recipe (``--protocol`` preset, e.g. airbench94) against
the trainer's default recipe (fastnet, 15 epochs, the trainer's defaults), both measured in the same run, seed by seed.

Each run is ``pst-fast train`` evaluated after every epoch, in OUT/<recipe>/s<seed>/ (an interrupted study resumes;
finished runs are only read). Training compute counts 3x the model's forward FLOPs (2x MACs of convolutions and linear
layers, :func:`pst_fast.models.model_info`) per training image (forward + backward), not the evaluation; wall time is
the sum of the training epochs' seconds. For each target the table gives the first epoch whose test accuracy reaches
it, with the compute and time spent up to then, or "—"; then the final accuracy (mean ± half the range over the seeds)
and the achieved training GFLOP/s as a fraction of the bfloat16 (``--amp on``) or float32 matmul peak measured at the
start of the run. The default recipe's row is the same-run baseline the ratios are taken against.

Usage:
  python benchmarks/time_to_accuracy.py --data data/cifar10 --recipes airbench94,default --seeds 0,1,2 --out runs/tta [--amp on]
OUT/time_to_accuracy.md holds the table, OUT/time_to_accuracy.json every run's per-epoch numbers.
"""
import argparse
import json
from pathlib import Path

from pst_fast.benchmark import Peaks
from pst_fast.io import atomic_write_json, atomic_write_text
from pst_fast.models import model_info
from pst_fast.run import resolve, train


def run_recipe(recipe: str, data: str, seed: int, out: Path, amp: str, epochs: int) -> dict:
    """One finished run of ``recipe`` ('default' = the trainer's defaults): its config and per-epoch lines."""
    options = dict(data=data, seed=seed, out=str(out / recipe / f"s{seed}"), amp=amp, quiet=True)
    if recipe != "default":
        options["protocol"] = recipe
    if epochs:
        options["epochs"] = epochs
    train(**options)
    cfg = resolve(**options).cfg
    lines = [json.loads(line) for line in (out / recipe / f"s{seed}" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {"recipe": recipe, "seed": seed, "model": cfg.model, "epochs": lines}


def reach(run: dict, target: float, flops_per_image: float) -> tuple[int, float, float] | None:
    """(epoch, training PFLOP, training seconds) at the first evaluation with test accuracy >= ``target``, or None."""
    pflop = seconds = 0.0
    for line in run["epochs"]:
        pflop += 3 * flops_per_image * line["images_per_second"] * line["epoch_seconds"] / 1e15
        seconds += line["epoch_seconds"]
        if line.get("test_acc", -1) >= target:
            return line["epoch"] + 1, pflop, seconds
    return None


def table(runs: list[dict], targets: list[float], peaks: Peaks, amp: str) -> str:
    peak_kind = "matmul-bf16" if amp == "on" else "matmul"
    head = "| recipe | model | seed | " + " | ".join(f"to {t:.0%}: epoch, PFLOP, min" for t in targets) + \
           " | final test acc | training GFLOP/s | of peak |"
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for run in runs:
        fpi = model_info(run["model"])["flops_per_image"]
        cells = []
        for t in targets:
            hit = reach(run, t, fpi)
            cells.append("—" if hit is None else f"{hit[0]}, {hit[1]:.3f}, {hit[2] / 60:.1f}")
        images = sum(l["images_per_second"] * l["epoch_seconds"] for l in run["epochs"])
        seconds = sum(l["epoch_seconds"] for l in run["epochs"])
        gflops = 3 * fpi * images / seconds / 1e9
        rows.append(f"| {run['recipe']} | {run['model']} | {run['seed']} | " + " | ".join(cells) +
                    f" | {100 * run['epochs'][-1]['test_acc']:.2f} | {gflops:.1f} | {100 * peaks.fraction(peak_kind, gflops * 1e9):.0f}% |")
    by_recipe: dict[str, list[float]] = {}
    for run in runs:
        by_recipe.setdefault(run["recipe"], []).append(100 * run["epochs"][-1]["test_acc"])
    rows.append("")
    rows += [f"- {r}: final test accuracy {sum(a) / len(a):.2f} ± {(max(a) - min(a)) / 2:.2f} over {len(a)} seed(s)" for r, a in by_recipe.items()]
    return "\n".join(rows) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/cifar10", help="dataset with the full CIFAR-10 test split (pst-fast data import)")
    p.add_argument("--recipes", default="airbench94,default", help="comma-separated --protocol presets, and 'default'")
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--targets", default="0.90,0.93,0.94", help="comma-separated test accuracies in [0, 1]")
    p.add_argument("--epochs", type=int, default=0, help="override every recipe's epochs (smoke runs); 0 = the recipe's")
    p.add_argument("--amp", default="on", choices=("on", "off", "auto"))
    p.add_argument("--out", default="runs/time_to_accuracy")
    args = p.parse_args()
    out = Path(args.out)
    peaks = Peaks.measure("cpu")
    runs = [run_recipe(r, args.data, int(s), out, args.amp, args.epochs) for s in args.seeds.split(",") for r in args.recipes.split(",")]
    targets = [float(t) for t in args.targets.split(",")]
    text = table(runs, targets, peaks, args.amp)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "time_to_accuracy.md", text)
    atomic_write_json(out / "time_to_accuracy.json", {"runs": runs, "peaks": vars(peaks)})
    print(text)


if __name__ == "__main__":
    main()
