"""PST recipe study: train every (data, recipe, seed) with the trainer's defaults and tabulate clean accuracy, mean ± spread.

Defaults are chosen on a **validation split** carved from the training images (``--val-split``, default 1,000: the
same class-balanced images for every run, evaluated in their clean versions; the test split is not read), on the
development poisons; the final table is the same study with ``--val-split 0`` (clean test accuracy) on every poison.
Each run lives in OUT/<data>/<recipe>-s<seed>/ (a normal run directory), so an interrupted study resumes and finished
runs are never repeated. The table (final accuracy, mean over seeds ± half the range, with the PST detection's
epoch) and an "average" row over the data are printed and written to OUT/study.md; OUT/study.png plots the
accuracy per epoch, a panel per data, a line per recipe (first seed).

Usage (``--table-only`` tabulates what OUT holds without training):
  python benchmarks/pst_study.py --data clean=cifar10-mini,em=poisons/em,lsp=poisons/lsp \\
      --recipes "standard=standard;pst=pst;pst-jpeg=pst-jpeg;iss-jpeg=iss-jpeg" --seeds 0,1 --out runs/study
A recipe is NAME=DEFENSE[:DEFENSE_ARGS]; DEFENSE_ARGS is the --defense-args string.
"""
import argparse
import json
from pathlib import Path

from pst_fast.figures import pyplot, save_png
from pst_fast.io import atomic_write_text
from pst_fast.run import train


def parse_pairs(text: str, sep: str) -> dict[str, str]:
    pairs = {}
    for item in filter(None, (s.strip() for s in text.split(sep))):
        name, eq, value = item.partition("=")
        if not eq:
            raise SystemExit(f"{item!r}: expected NAME=VALUE")
        pairs[name.strip()] = value.strip()
    return pairs


def finished(run_dir: Path) -> dict | None:
    f = run_dir / "summary.json"
    return json.loads(f.read_text()) if f.is_file() else None


def final(summary: dict) -> float:
    return summary.get("final_val_acc", summary.get("final_test_acc"))


def cell(out: Path, data: str, recipe: str, seeds: list[int]) -> tuple[str, float | None]:
    """('mean ± half-range (@detection epochs)', mean) over the finished seeds; ('—', None) when none finished."""
    accs, fired = [], []
    for seed in seeds:
        d = out / data / f"{recipe}-s{seed}"
        s = finished(d)
        if s is None:
            continue
        accs.append(100 * final(s))
        if (d / "pst.json").is_file():
            events = [e for e in json.loads((d / "pst.json").read_text())["events"] if e.get("hold")]
            fired.append(f"{events[0]['epoch']:.2f}" if events else "-")
    if not accs:
        return "—", None
    mean = sum(accs) / len(accs)
    text = f"{mean:.1f} ± {(max(accs) - min(accs)) / 2:.1f}" if len(accs) > 1 else f"{mean:.1f}"
    if fired:
        text += f" (@{', '.join(fired)})"
    return text, mean


def table(out: Path, datas: dict, recipes: dict, seeds: list[int], header: str) -> str:
    lines = [header, "", "| data | " + " | ".join(recipes) + " |", "|---" * (len(recipes) + 1) + "|"]
    means: dict[str, list] = {r: [] for r in recipes}
    for data in datas:
        cells = []
        for recipe in recipes:
            text, mean = cell(out, data, recipe, seeds)
            cells.append(text)
            means[recipe].append(mean)
        lines.append(f"| {data} | " + " | ".join(cells) + " |")
    avg = [f"**{sum(m) / len(m):.1f}**" if m and None not in m else "—" for m in means.values()]
    lines.append("| **average** | " + " | ".join(avg) + " |")
    return "\n".join(lines) + "\n"


def plot(out: Path, datas: dict, recipes: dict, seed: int) -> Path:
    """OUT/study.png: clean accuracy per epoch, one panel per data, one line per finished recipe (seed ``seed``)."""
    plt = pyplot()
    ncol = min(4, len(datas))
    nrow = -(-len(datas) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow + 0.5), squeeze=False, sharey=True)
    for ax in axes.flat[len(datas):]:
        ax.set_visible(False)
    for ax, data in zip(axes.flat, datas):
        for i, recipe in enumerate(recipes):
            d = out / data / f"{recipe}-s{seed}"
            if finished(d) is not None:
                lines = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
                key = "val_acc" if any("val_acc" in line for line in lines) else "test_acc"
                lines = [line for line in lines if key in line]
                ax.plot([line["epoch"] + 1 for line in lines], [100 * line[key] for line in lines], ".-", color=f"C{i % 10}", label=recipe)
        ax.set_title(data), ax.set_xlabel("epoch"), ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel("clean accuracy (%)")
    handles = {h.get_label(): h for ax in axes.flat for h in ax.get_lines()}
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))
    fig.legend(handles.values(), handles.keys(), loc="upper center", ncol=min(len(handles), 8), fontsize=8)
    return save_png(fig, out / "study.png", tight=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="NAME=DATA pairs, comma-separated (clean data and poisons)")
    ap.add_argument("--recipes", required=True, help="NAME=DEFENSE[:ARGS] pairs, semicolon-separated")
    ap.add_argument("--model", default="fastnet")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--epochs", type=int, default=15, help="training epochs of every run (the trainer's default: 15)")
    ap.add_argument("--val-split", type=int, default=1000, help="validation images carved from the training split; 0 = evaluate on the test split")
    ap.add_argument("--amp", default="on", help="bf16 autocast: on or off (on: faster on a CPU with AVX512-BF16 at the same accuracy, docs/benchmarks.md)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--table-only", action="store_true", help="tabulate the finished runs in OUT, train nothing ('—' = not run)")
    args = ap.parse_args()
    datas, recipes = parse_pairs(args.data, ","), parse_pairs(args.recipes, ";")
    seeds, out = [int(s) for s in args.seeds.split(",")], Path(args.out)
    for seed in ([] if args.table_only else seeds):
        for dname, data in datas.items():
            for rname, recipe in recipes.items():
                defense, _, dargs = recipe.partition(":")
                s = train(data=data, model=args.model, seed=seed, epochs=args.epochs, defense=defense, defense_args=dargs, amp=args.amp,
                          val_split=args.val_split, out=str(out / dname / f"{rname}-s{seed}"), quiet=True)
                print(f"{dname:<10} {rname:<16} seed {seed}  final {100 * final(s):.2f}  {s['wall_seconds']:.0f} s", flush=True)
    split = f"validation split ({args.val_split} training images, clean)" if args.val_split else "clean test split"
    header = (f"final accuracy (%) on the {split}, {args.model}, {args.epochs} epochs, mean ± half the range over seeds "
              f"{', '.join(map(str, seeds))}; (@E) = epoch of PST's first hold per seed ('-': none)")
    text = table(out, datas, recipes, seeds, header)
    atomic_write_text(out / "study.md", text)
    print("\n" + text + f"\n{plot(out, datas, recipes, seeds[0])}")


if __name__ == "__main__":
    main()
