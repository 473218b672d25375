"""Reports of a sweep database: per-cell records (CSV / JSON), and a Markdown page plus a static HTML site
(:mod:`.site`) with the attack × defense table (final and peak clean test accuracy, UD; mean ± sample standard
deviation over seeds), a heatmap of the grid and the learning curves. A partly finished sweep reports what is
done and marks the rest."""
from __future__ import annotations

import csv
import io
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..figures import pyplot, save_png
from ..io import atomic_write_text
from ..text import printable
from .spec import CLEAN
from .store import Store

FIELDS = ("dataset", "attack", "defense", "model", "seed", "status", "final_test_acc", "peak_test_acc", "ud")


def _run_dir_lines(run_dir: str | None) -> list[dict]:
    """The metrics.jsonl lines of a run directory so far ([] when the cell has not started)."""
    f = Path(run_dir) / "metrics.jsonl" if run_dir else None
    return [json.loads(l) for l in f.read_text().splitlines() if l.strip()] if f and f.is_file() else []


def records(store: Store) -> list[dict]:
    """One record per cell (UD references included), in plan order; unfinished cells carry their progress."""
    return [{k: r[k] for k in FIELDS} | {k: r[k] for k in ("id", "error", "run_dir", "lp", "seconds", "updated")} |
            {"reference": bool(r["reference"]), "config": json.loads(r["config"]), "epochs": json.loads(r["config"])["epochs"],
             "epochs_done": 0 if r["status"] in ("done", "failed") else len(_run_dir_lines(r["run_dir"]))}
            for r in store.cells()]


def run_lines(store: Store, r: dict) -> list[dict]:
    """Per-epoch metrics of a record: from the database when done, else from its run directory so far."""
    return store.epochs(r["id"]) if r["status"] == "done" else _run_dir_lines(r["run_dir"])


def as_csv(recs: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(recs)
    return buf.getvalue()


def grid(recs: list[dict]) -> tuple[list, list, dict]:
    """(rows, columns, {(row, defense): [records]}) with rows = (dataset, attack, model), clean rows first."""
    groups, rows, cols = defaultdict(list), [], []
    for r in recs:
        row = (r["dataset"], r["attack"], r["model"])
        rows += [row] if row not in rows else []
        cols += [r["defense"]] if r["defense"] not in cols else []
        groups[(row, r["defense"])].append(r)
    return sorted(rows, key=lambda row: row[1] != CLEAN), cols, groups


def stats(rs: list[dict], key: str) -> tuple[float, float | None, int] | None:
    """(mean, sample standard deviation or None below two values, n) of ``key`` over the finished records; None if none."""
    v = [r[key] for r in rs if r["status"] == "done" and r[key] is not None]
    if not v:
        return None
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else None, len(v)


def _mean(rs: list[dict], key: str) -> float | None:
    s = stats(rs, key)
    return s[0] if s else None


def spread_text(s: tuple[float, float | None, int], scale: float = 100.0, digits: int = 1) -> str:
    """'mean' or 'mean ± sd' of a :func:`stats` triple, times ``scale``."""
    mean, sd, _ = s
    return f"{scale * mean:.{digits}f}" + (f" ± {scale * sd:.{digits}f}" if sd is not None else "")


def cell_text(rs: list[dict]) -> str:
    done = [r for r in rs if r["status"] == "done"]
    if not rs:
        return "—"
    if not done:
        if any(r["status"] == "failed" for r in rs):
            return "failed"
        progress = max(rs, key=lambda r: r["epochs_done"])
        return f"epoch {progress['epochs_done']}/{progress['epochs']}" if progress["epochs_done"] else "pending"
    text = f"{spread_text(stats(done, 'final_test_acc'))} / {spread_text(stats(done, 'peak_test_acc'))}"
    ud = stats(done, "ud")
    text += f" (UD {spread_text(ud, 1.0, 2)})" if ud is not None else ""
    return text + (f" [{len(done)}/{len(rs)} seeds]" if len(done) < len(rs) else "")


def summary(recs: list[dict]) -> list[str]:
    """One sentence per poisoned row, from finished cells: its accuracy under the clean row's baseline defense
    (standard when present) against clean data, its UD, and the best other defense."""
    rows, cols, groups = grid(recs)
    acc = lambda row, c: _mean(groups.get((row, c), []), "final_test_acc")  # noqa: E731
    out = []
    for clean in (r for r in rows if r[1] == CLEAN):
        done = [c for c in cols if acc(clean, c) is not None]
        if not done:
            continue
        base = "standard" if "standard" in done else done[0]
        out.append(f"{clean[0]}, {clean[2]}: clean data with {base} training reaches {100 * acc(clean, base):.1f}%.")
        for row in (r for r in rows if r[1] != CLEAN and (r[0], r[2]) == (clean[0], clean[2])):
            if acc(row, base) is None:
                continue
            drop = 100 * (acc(clean, base) - acc(row, base))
            text = f"{row[1]}: {base} {100 * acc(row, base):.1f}% ({abs(drop):.1f} points {'below' if drop >= 0 else 'above'} clean)"
            ud = _mean(groups.get((row, base), []), "ud")
            text += f", UD {ud:.2f}" if ud is not None else ""
            others = {c: acc(row, c) for c in cols if c != base and acc(row, c) is not None}
            if others:
                best = max(others, key=others.get)
                text += f"; best defense {best} {100 * others[best]:.1f}% ({100 * (others[best] - acc(row, base)):+.1f})"
            out.append(text + ".")
    return out


def seeds_text(recs: list[dict]) -> str:
    """How the entries aggregate seeds: 'mean over seeds' plus the spread and n where some entry has two or more."""
    rows, cols, groups = grid(recs)
    ns = sorted({sum(r["status"] == "done" for r in rs) for rs in groups.values()} - {0})
    if not ns or ns[-1] < 2:
        return "mean over seeds" if len({r["seed"] for r in recs}) > 1 else "one seed"
    n = str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
    return f"mean ± sample standard deviation over n = {n} finished seeds"


def table(recs: list[dict]) -> tuple[str, list[str], list[list[str]]]:
    """(caption, header, body) of the attack × defense table; dataset and model get columns only when they vary."""
    rows, cols, groups = grid(recs)
    names = ("dataset", "attack", "model")
    keys = [i for i, k in enumerate(names) if k == "attack" or len({r[i] for r in rows}) > 1]
    same = [f"{names[i]} {rows[0][i]}" for i in range(3) if rows and i not in keys]
    done = sum(r["status"] == "done" for r in recs)
    caption = (f"{done} of {len(recs)} cells done{' (' + ', '.join(same) + ')' if same else ''}. Each entry: "
               f"final / peak clean test accuracy (%) and UD when measured, {seeds_text(recs)}.")
    body = [[row[i] for i in keys] + [cell_text(groups.get((row, c), [])) for c in cols] for row in rows]
    return caption, [names[i] for i in keys] + cols, body


def markdown(recs: list[dict], title: str) -> str:
    caption, header, body = table(recs)
    lines = [f"# {title}", "", caption, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    short = summary(recs)
    if short:
        lines += ["", "In short:", ""] + [f"- {t}" for t in short]
    failed = [r for r in recs if r["status"] == "failed"]
    if failed:
        lines += ["", "Failed cells:", ""] + [f"- {r['attack']} × {r['defense']} seed {r['seed']}: {r['error']}" for r in failed]
    return "\n".join(lines) + "\n"


def heatmap(recs: list[dict], path: Path) -> Path:
    """Final clean test accuracy (mean over seeds) of the grid, annotated with UD when measured."""
    plt = pyplot()
    rows, cols, groups = grid(recs)
    acc = np.array([[_mean(groups.get((r, c), []), "final_test_acc") or np.nan for c in cols] for r in rows]) * 100
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(cols), 1.0 + 0.55 * len(rows)))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#eeeeee")  # cells the grid does not have, or not finished yet
    im = ax.imshow(acc, cmap=cmap, vmin=0, vmax=100, aspect="auto")
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ud = _mean(groups.get((r, c), []), "ud")
            label = "—" if np.isnan(acc[i, j]) else f"{acc[i, j]:.1f}" + (f"\nUD {ud:.2f}" if ud is not None else "")
            ax.text(j, i, label, ha="center", va="center", fontsize=8, color="black" if np.isnan(acc[i, j]) or acc[i, j] >= 60 else "white")
    ax.set_xticks(range(len(cols)), cols, fontsize=8)
    ax.set_yticks(range(len(rows)), [f"{r[1]} ({r[2]})" for r in rows], fontsize=8)
    ax.set_xlabel("defense"), ax.set_ylabel("attack (model)")
    fig.colorbar(im, ax=ax, label="final clean test accuracy (%)")
    return save_png(fig, path)


def curves(store: Store, recs: list[dict], path: Path) -> Path:
    """Clean test accuracy per epoch: one panel per attack row, one line per defense (mean over seeds; one colour
    per defense in every panel)."""
    plt = pyplot()
    rows, cols, groups = grid(recs)
    fig, axes = plt.subplots(1, max(1, len(rows)), figsize=(3.4 * max(1, len(rows)), 3.2), squeeze=False, sharey=True)
    for ax, row in zip(axes[0], rows):
        for j, c in enumerate(cols):
            series = [[l.get("test_acc") for l in store.epochs(r["id"])] for r in groups.get((row, c), []) if r["status"] == "done"]
            if series:
                n = min(len(s) for s in series)
                ax.plot(range(1, n + 1), 100 * np.mean([[v or 0 for v in s[:n]] for s in series], axis=0), "o-", ms=3, color=f"C{j}", label=c)
        ax.set_title(f"{row[1]} ({row[2]})", fontsize=9), ax.set_xlabel("epoch"), ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("clean test acc (%)")
    handles = [plt.Line2D([], [], color=f"C{j}", marker="o", ms=3, label=c) for j, c in enumerate(cols)]
    fig.legend(handles=handles, loc="lower center", ncol=len(cols), fontsize=8, frameon=False)
    fig.subplots_adjust(bottom=0.24)
    return save_png(fig, path)


def write_report(db: str | Path, out: str | Path) -> Path:
    """report.md, grid.png, curves.png and the static site (report.html, a page per table entry, :mod:`.site`) in
    ``out``; returns the path of report.html."""
    from .site import write_site

    store, out = Store(db), Path(out)
    recs = records(store)
    title = f"Sweep report: {Path(db).name}"
    md = markdown(recs, title)
    heatmap(recs, out / "grid.png")
    curves(store, recs, out / "curves.png")
    atomic_write_text(out / "report.md", md + "\n![grid](grid.png)\n\n![curves](curves.png)\n")
    return write_site(store, recs, out, title, table(recs)[0], summary(recs))


def tensorboard_name(dataset: str, attack: str, defense: str, model: str, seed: int, reference: bool = False) -> str:
    """A cell's TensorBoard run under the sweep's log directory: DATASET/ATTACK/DEFENSE/MODEL/seedN (-ud-reference)."""
    parts = [Path(dataset).name, attack, defense, model, f"seed{seed}" + ("-ud-reference" if reference else "")]
    return "/".join(re.sub(r"[^A-Za-z0-9._-]+", "_", p) for p in parts)


def export_tensorboard(db: str | Path, logdir: str | Path) -> list[Path]:
    """TensorBoard event files of every cell of ``db`` with finished epochs (done ones from the database, others from
    their run directories so far), one run per cell (:func:`tensorboard_name`); returns the run directories."""
    from ..tensorboard import export_run

    store, runs = Store(db), []
    for r in records(store):
        lines = run_lines(store, r)
        if lines:
            runs.append(Path(logdir) / tensorboard_name(r["dataset"], r["attack"], r["defense"], r["model"], r["seed"], r["reference"]))
            export_run(lines, runs[-1], r["run_dir"])
    return runs


def dumps(db: str | Path, fmt: str) -> str:
    recs = records(Store(db))
    if fmt == "csv":
        return as_csv(recs)
    return json.dumps([{k: r[k] for k in FIELDS} for r in recs], indent=1) + "\n"


def status_table(rows: list[dict]) -> str:
    """One line per cell of a sweep database (``Store.cells()``): attack, defense, model, seed, status, final and peak
    clean test accuracy (%), UD, and the error of a failed cell; each line printable (control characters escaped)."""
    pct = lambda v: "—" if v is None else f"{100 * v:.1f}"  # noqa: E731
    lines = [f"{'attack':<12} {'defense':<12} {'model':<10} {'seed':>4} {'status':<8} {'final':>6} {'peak':>6} {'UD':>6}"]
    for r in rows:
        ud = "—" if r["ud"] is None else f"{r['ud']:.2f}"
        lines.append(printable(f"{r['attack']:<12} {r['defense']:<12} {r['model']:<10} {r['seed']:>4} {r['status']:<8} "
                               f"{pct(r['final_test_acc']):>6} {pct(r['peak_test_acc']):>6} {ud:>6}" + (f"  {r['error']}" if r["error"] else "")))
    return "\n".join(lines)
