"""PST recipe study: train every (poison, recipe) pair with the trainer's defaults and tabulate clean test accuracy.

Each run lives in OUT/<poison>/<recipe>/ (a normal run directory), so an interrupted study resumes where
it stopped and finished runs are never repeated. The table (final / peak accuracy, and the PST trigger
epoch when it fired) is printed and written to OUT/study.md.

Usage (``--table-only`` tabulates what OUT holds without training):
  python benchmarks/pst_study.py --poisons clean=cifar10-mini,em=poisons/em,lsp=poisons/lsp \\
      --recipes "standard=standard;pst=pst;pst-acm=pst:trigger=acm1/s1:0.3" --out runs/study [--model fastnet]

A recipe is NAME=DEFENSE[:DEFENSE_ARGS]; DEFENSE_ARGS is the --defense-args string. OUT/study.png plots
clean test accuracy per epoch, a panel per poison, a line per recipe.
"""
import argparse
import json
from pathlib import Path

from pst_fast.figures import pyplot, save_png
from pst_fast.io import atomic_write_text
from pst_fast.training import train


def parse_pairs(text: str, sep: str) -> dict[str, str]:
    pairs = {}
    for item in filter(None, (s.strip() for s in text.split(sep))):
        name, eq, value = item.partition("=")
        if not eq:
            raise SystemExit(f"{item!r}: expected NAME=VALUE")
        pairs[name.strip()] = value.strip()
    return pairs


def cell(run_dir: Path) -> str:
    if not (run_dir / "summary.json").is_file():
        return "—"
    s = json.loads((run_dir / "summary.json").read_text())
    text = f"{100 * s['final_test_acc']:.1f} / {100 * s['peak_test_acc']:.1f}"
    pst = run_dir / "pst.json"
    if pst.is_file():
        events = json.loads(pst.read_text())["events"]
        text += f" (@{events[0]['epoch']:.2f})" if events else " (no trigger)"
    return text


def plot(out: Path, poisons, recipes) -> Path:
    """OUT/study.png: clean test accuracy per epoch, one panel per poison, one line per finished recipe."""
    plt = pyplot()

    ncol = min(4, len(poisons))
    nrow = -(-len(poisons) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow + 0.5), squeeze=False, sharey=True)
    for ax in axes.flat[len(poisons):]:
        ax.set_visible(False)
    for ax, pname in zip(axes.flat, poisons):
        for i, rname in enumerate(recipes):
            f = out / pname / rname / "metrics.jsonl"
            if (out / pname / rname / "summary.json").is_file():
                lines = [json.loads(l) for l in f.read_text().splitlines() if "test_acc" in l]
                ax.plot([l["epoch"] + 1 for l in lines], [100 * l["test_acc"] for l in lines], ".-", color=f"C{i % 10}", label=rname)
        ax.set_title(pname), ax.set_xlabel("epoch"), ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel("clean test accuracy (%)")
    handles = {h.get_label(): h for ax in axes.flat for h in ax.get_lines()}
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))
    fig.legend(handles.values(), handles.keys(), loc="upper center", ncol=min(len(handles), 8), fontsize=8)
    path = out / "study.png"
    return save_png(fig, path, tight=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--poisons", required=True, help="NAME=DATA pairs, comma-separated")
    ap.add_argument("--recipes", required=True, help="NAME=DEFENSE[:ARGS] pairs, semicolon-separated")
    ap.add_argument("--model", default="fastnet")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=15, help="training epochs of every run (the trainer's default: 15)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--table-only", action="store_true", help="tabulate the finished runs in OUT, train nothing ('—' = not run)")
    args = ap.parse_args()
    poisons, recipes = parse_pairs(args.poisons, ","), parse_pairs(args.recipes, ";")
    out = Path(args.out)
    for pname, data in ({} if args.table_only else poisons).items():
        for rname, recipe in recipes.items():
            defense, _, dargs = recipe.partition(":")
            run_dir = out / pname / rname
            s = train(data=data, model=args.model, seed=args.seed, epochs=args.epochs, defense=defense, defense_args=dargs, out=str(run_dir), quiet=True)
            print(f"{pname:<10} {rname:<16} final {100 * s['final_test_acc']:.2f}  peak {100 * s['peak_test_acc']:.2f}  {s['wall_seconds']:.0f} s", flush=True)
    lines = [f"clean test accuracy (%), final / peak, {args.model}, {args.epochs} epochs, seed {args.seed}; (@E) = epoch the PST trigger fired", "",
             "| poison | " + " | ".join(recipes) + " |", "|---" * (len(recipes) + 1) + "|"]
    for pname in poisons:
        lines.append(f"| {pname} | " + " | ".join(cell(out / pname / r) for r in recipes) + " |")
    table = "\n".join(lines) + "\n"
    atomic_write_text(out / "study.md", table)
    print("\n" + table + f"\n{plot(out, poisons, recipes)}")


if __name__ == "__main__":
    main()
