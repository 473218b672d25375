"""Time and training compute to reach target test accuracies: a recipe (``--protocol`` preset, e.g. airbench94) against
the trainer's default recipe (fastnet, 15 epochs, the trainer's defaults), both measured in the same run, seed by seed.

Each run is ``pst-fast train`` evaluated every ``--eval-every`` epochs, in OUT/<recipe>/s<seed>/ (an interrupted study resumes;
finished runs are only read). Training compute counts 3x the model's forward FLOPs (2x MACs of convolutions and linear
layers, :func:`pst_fast.models.model_info`) per training image (forward + backward), not the evaluation; wall time is
the sum of the training epochs' seconds. For each target the table gives the first epoch whose test accuracy reaches
it, with the compute and time spent up to then, or "—"; then the final accuracy (mean ± half the range over the seeds)
and the achieved training GFLOP/s as a fraction of the bfloat16 (``--amp on``) or float32 matmul peak measured at the
start of each run, with its threads. The default recipe's row is the same-run baseline the ratios are taken against.

Usage:
  python benchmarks/time_to_accuracy.py --data data/cifar10 --recipes airbench94,default --seeds 0,1,2 --out runs/tta [--amp on]
OUT/time_to_accuracy.md holds the table, OUT/time_to_accuracy.json every run's per-epoch numbers.
"""
import argparse
import json
from pathlib import Path

import torch

from pst_fast.benchmark import Peaks
from pst_fast.io import atomic_write_json, atomic_write_text
from pst_fast.models import model_info
from pst_fast.run import resolve, train


def run_recipe(recipe: str, data: str, seed: int, out: Path, amp: str, epochs: int, eval_every: int) -> dict:
    """One finished run of ``recipe`` ('default' = the trainer's defaults): its model, per-epoch lines and the peaks measured
    in the process that trained it (OUT/<recipe>/s<seed>/record.json; a finished run is only read)."""
    run_dir = out / recipe / f"s{seed}"
    if (run_dir / "record.json").is_file():
        return json.loads((run_dir / "record.json").read_text())
    options = dict(data=data, seed=seed, out=str(run_dir), amp=amp, quiet=True, eval_every=eval_every)
    if recipe != "default":
        options["protocol"] = recipe
    if epochs:
        options["epochs"] = epochs
    peaks = Peaks.measure("cpu")
    train(**options)
    cfg = resolve(**options).cfg
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    record = {"recipe": recipe, "seed": seed, "model": cfg.model, "amp": amp, "epochs": lines, "peaks": vars(peaks)}
    atomic_write_json(run_dir / "record.json", record)
    return record


def reach(run: dict, target: float, flops_per_image: float) -> tuple[int, float, float] | None:
    """(epoch, training PFLOP, training seconds) at the first evaluation with test accuracy >= ``target``, or None."""
    pflop = seconds = 0.0
    for line in run["epochs"]:
        pflop += 3 * flops_per_image * line["images_per_second"] * line["epoch_seconds"] / 1e15
        seconds += line["epoch_seconds"]
        if line.get("test_acc", -1) >= target:  # epochs without an evaluation have no test_acc
            return line["epoch"] + 1, pflop, seconds
    return None


def table(runs: list[dict], targets: list[float]) -> str:
    head = "| recipe | model | seed | " + " | ".join(f"to {t:.0%}: epoch, PFLOP, min" for t in targets) + \
           " | final test acc | training GFLOP/s | of peak (threads) |"
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
        peaks = Peaks(**run["peaks"])
        fraction = peaks.fraction("matmul-bf16" if run["amp"] == "on" else "matmul", gflops * 1e9)
        rows.append(f"| {run['recipe']} | {run['model']} | {run['seed']} | " + " | ".join(cells) +
                    f" | {100 * run['epochs'][-1]['test_acc']:.2f} | {gflops:.1f} | {100 * fraction:.0f}% ({peaks.threads}) |")
    by_recipe: dict[str, list[dict]] = {}
    for run in runs:
        by_recipe.setdefault(run["recipe"], []).append(run)
    rows.append("")
    for recipe, group in by_recipe.items():
        acc = [100 * r["epochs"][-1]["test_acc"] for r in group]
        rows.append(f"- {recipe}: final test accuracy {sum(acc) / len(acc):.2f} ± {(max(acc) - min(acc)) / 2:.2f} over {len(acc)} seed(s)")
    base = by_recipe.get("default")
    for recipe, group in by_recipe.items():
        if base is None or recipe == "default":
            continue
        for t in targets:  # mean over the seeds that reached the target, against the default recipe's
            mine = [h for h in (reach(r, t, model_info(r["model"])["flops_per_image"]) for r in group) if h]
            theirs = [h for h in (reach(r, t, model_info(r["model"])["flops_per_image"]) for r in base) if h]
            if mine and theirs:
                m, b = [sum(h[2] for h in x) / len(x) for x in (mine, theirs)]
                pm, pb = [sum(h[1] for h in x) / len(x) for x in (mine, theirs)]
                rows.append(f"- to {t:.0%}: {recipe} {m / 60:.1f} min, {pm:.3f} PFLOP; default {b / 60:.1f} min, {pb:.3f} PFLOP: "
                            f"{b / m:.2f}x less time, {pb / pm:.2f}x less compute")
            else:
                rows.append(f"- to {t:.0%}: reached by {len(mine)}/{len(group)} {recipe} and {len(theirs)}/{len(base)} default runs")
    return "\n".join(rows) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/cifar10", help="dataset with the full CIFAR-10 test split (pst-fast data import)")
    p.add_argument("--recipes", default="airbench94,default", help="comma-separated --protocol presets, and 'default'")
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--targets", default="0.90,0.93,0.94", help="comma-separated test accuracies in [0, 1]")
    p.add_argument("--epochs", type=int, default=0, help="override every recipe's epochs (smoke runs); 0 = the recipe's")
    p.add_argument("--amp", default="on", choices=("on", "off", "auto"))
    p.add_argument("--eval-every", type=int, default=1, help="evaluate every k epochs (the last always): the targets are "
                   "checked at those epochs only; a larger k saves evaluation time (airbench94's TTA costs 6 forwards per image)")
    p.add_argument("--threads", type=int, default=0, help="torch threads of this process (0 = torch's default); the peak of each "
                   "run is measured with the same threads. Runs of one OUT may be trained by separate processes in parallel "
                   "(one --seeds/--recipes each); a last call with all of them only reads them and writes the table")
    p.add_argument("--out", default="runs/time_to_accuracy")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    runs = [run_recipe(r, args.data, int(s), out, args.amp, args.epochs, args.eval_every) for s in args.seeds.split(",") for r in args.recipes.split(",")]
    targets = [float(t) for t in args.targets.split(",")]
    text = table(runs, targets)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "time_to_accuracy.md", text)
    atomic_write_json(out / "time_to_accuracy.json", {"runs": runs})
    print(text)


if __name__ == "__main__":
    main()
