"""Reports of a sweep database: per-cell records (CSV / JSON) and a Markdown + HTML page with the
attack × defense table (final and peak clean test accuracy, UD; means over seeds), a heatmap of the grid and
the learning curves. A partly finished sweep reports what is done and marks the rest."""
from __future__ import annotations

import csv
import html
import io
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..figures import pyplot, save_png
from ..io import atomic_write_text
from .store import Store

FIELDS = ("dataset", "attack", "defense", "model", "seed", "status", "final_test_acc", "peak_test_acc", "ud")


def records(store: Store) -> list[dict]:
    """One record per cell (UD references included), in plan order."""
    return [{k: r[k] for k in FIELDS} | {"id": r["id"], "reference": bool(r["reference"]), "error": r["error"]} for r in store.cells()]


def as_csv(recs: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(recs)
    return buf.getvalue()


def grid(recs: list[dict]) -> tuple[list, list, dict]:
    """(rows, columns, {(row, defense): [records]}) with rows = (dataset, attack, model) of non-reference cells."""
    groups, rows, cols = defaultdict(list), [], []
    for r in recs:
        if r["reference"]:
            continue
        row = (r["dataset"], r["attack"], r["model"])
        rows += [row] if row not in rows else []
        cols += [r["defense"]] if r["defense"] not in cols else []
        groups[(row, r["defense"])].append(r)
    return rows, cols, groups


def _mean(rs: list[dict], key: str) -> float | None:
    v = [r[key] for r in rs if r["status"] == "done" and r[key] is not None]
    return float(np.mean(v)) if v else None


def cell_text(rs: list[dict]) -> str:
    done = [r for r in rs if r["status"] == "done"]
    if not done:
        return "failed" if any(r["status"] == "failed" for r in rs) else "pending"
    text = f"{100 * _mean(done, 'final_test_acc'):.1f} / {100 * _mean(done, 'peak_test_acc'):.1f}"
    ud = _mean(done, "ud")
    text += f" (UD {ud:.2f})" if ud is not None else ""
    return text + (f" [{len(done)}/{len(rs)} seeds]" if len(done) < len(rs) else "")


def markdown(recs: list[dict], title: str) -> str:
    rows, cols, groups = grid(recs)
    done = sum(r["status"] == "done" for r in recs)
    lines = [f"# {title}", "", f"{done} of {len(recs)} cells done. Each entry: final / peak clean test accuracy (%), "
             "mean over seeds, and UD when measured.", "",
             "| dataset | attack | model | " + " | ".join(cols) + " |", "|---|---|---|" + "---|" * len(cols)]
    for row in rows:
        lines.append(f"| {row[0]} | {row[1]} | {row[2]} | " + " | ".join(cell_text(groups.get((row, c), [])) for c in cols) + " |")
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
    im = ax.imshow(acc, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ud = _mean(groups.get((r, c), []), "ud")
            label = "—" if np.isnan(acc[i, j]) else f"{acc[i, j]:.1f}" + (f"\nUD {ud:.2f}" if ud is not None else "")
            ax.text(j, i, label, ha="center", va="center", fontsize=8, color="white" if np.isnan(acc[i, j]) or acc[i, j] < 60 else "black")
    ax.set_xticks(range(len(cols)), cols, fontsize=8)
    ax.set_yticks(range(len(rows)), [f"{r[1]} ({r[2]})" for r in rows], fontsize=8)
    ax.set_xlabel("defense"), ax.set_ylabel("attack (model)")
    fig.colorbar(im, ax=ax, label="final clean test accuracy (%)")
    return save_png(fig, path)


def curves(store: Store, recs: list[dict], path: Path) -> Path:
    """Clean test accuracy per epoch: one panel per attack row, one line per defense (mean over seeds)."""
    plt = pyplot()
    rows, cols, groups = grid(recs)
    fig, axes = plt.subplots(1, max(1, len(rows)), figsize=(3.4 * max(1, len(rows)), 3.0), squeeze=False, sharey=True)
    for ax, row in zip(axes[0], rows):
        for c in cols:
            series = [[l.get("test_acc") for l in store.epochs(r["id"])] for r in groups.get((row, c), []) if r["status"] == "done"]
            if series:
                n = min(len(s) for s in series)
                ax.plot(range(1, n + 1), 100 * np.mean([[v or 0 for v in s[:n]] for s in series], axis=0), "o-", ms=3, label=c)
        ax.set_title(f"{row[1]} ({row[2]})", fontsize=9), ax.set_xlabel("epoch"), ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("clean test acc (%)"), axes[0][0].legend(fontsize=7)
    return save_png(fig, path)


def write_report(db: str | Path, out: str | Path) -> Path:
    """report.md, report.html, grid.png and curves.png in ``out``; returns the HTML path."""
    store, out = Store(db), Path(out)
    recs = records(store)
    title = f"Sweep report: {Path(db).name}"
    md = markdown(recs, title)
    heatmap(recs, out / "grid.png")
    curves(store, recs, out / "curves.png")
    atomic_write_text(out / "report.md", md + "\n![grid](grid.png)\n\n![curves](curves.png)\n")
    rows, cols, groups = grid(recs)
    table = "<table><tr><th>dataset</th><th>attack</th><th>model</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>"
    for row in rows:
        table += "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + \
                 "".join(f"<td>{html.escape(cell_text(groups.get((row, c), [])))}</td>" for c in cols) + "</tr>"
    page = (f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title><style>body{{font-family:sans-serif}}"
            f"td,th{{border:1px solid #ccc;padding:4px 8px}}table{{border-collapse:collapse}}</style><h1>{html.escape(title)}</h1>"
            f"<p>{html.escape(md.splitlines()[2])}</p>{table}<p><img src='grid.png'></p><p><img src='curves.png'></p>")
    return atomic_write_text(out / "report.html", page)


def dumps(db: str | Path, fmt: str) -> str:
    recs = records(Store(db))
    if fmt == "csv":
        return as_csv(recs)
    return json.dumps([{k: r[k] for k in FIELDS} for r in recs], indent=1) + "\n"
