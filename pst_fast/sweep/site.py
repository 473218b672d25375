"""The report of a sweep as a static site: open ``report.html`` from disk (no server, no network, no CDN).

    report.html        the attack × defense table (mean ± sample standard deviation over seeds), sortable by any
                       column and filterable by dataset, attack, model and defense (report.js, our own 42 lines),
                       each entry linking to its cell page; the summary, the grid heatmap and the learning curves
    cells/NAME.html    one page per entry of the table: every seed's status and numbers, the training
                       configuration, the poison (its parameters, generation facts and a clean | poisoned |
                       amplified-δ preview), the clean-accuracy curves, each seed's SAL heatmap beside its UD
                       reference with the layers UD counts marked (SAL > β) and λ per epoch, and PST's detector
                       trace with its transitions (from the run's pst.json, read generically)
    cells/NAME/*.png   the pictures of a cell page; poisons/ID.png the previews (one per poison)

Pictures of finished cells are redrawn only when the database says a cell changed after the picture was written (or
the drawing code did).
Every file goes through :mod:`pst_fast.io`'s atomic writes.
"""
from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

from ..data import describe
from ..errors import PstFastError
from ..figures import pyplot, save_png
from ..io import atomic_write, atomic_write_text
from .plan import Cell, Poison, content_id, reference_of
from .report import cell_text, grid, run_lines, spread_text, stats
from .store import Store

ASSETS = ("report.js", "report.css")
e = html.escape


def _slug(row: tuple, defense: str) -> str:
    """File name of a table entry's page: readable, and unique through a hash of the entry's key."""
    dataset, attack, model = row
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{attack}--{defense}--{model}--{Path(dataset).name}")
    return f"{text[:80]}-{content_id([dataset, attack, model, defense])[:6]}"


def _fresh(path: Path, rs: list[dict]) -> bool:
    """``path`` exists and was written after every record in ``rs`` last changed (all of them finished) and after the
    code that draws it."""
    from ..metrics import plot

    code = max(Path(__file__).stat().st_mtime, Path(plot.__file__).stat().st_mtime)
    return path.is_file() and all(r["status"] in ("done", "failed") and r["updated"] for r in rs) \
        and path.stat().st_mtime >= max([code] + [r["updated"] for r in rs])


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def is_clean(r: dict) -> bool:
    """Whether a record trains on clean data: its id is the content hash of its dataset and its options' identity (which
    adds the defense's and SAL's renamed parameters to the stored options), a poison's id otherwise."""
    from ..run import identity
    from ..training.config import TrainConfig

    return content_id({"kind": "cell", "data": r["dataset"], "train": identity(TrainConfig.from_dict(r["config"]))}) == r["id"]


def references(recs: list[dict]) -> dict[str, dict | None]:
    """{cell id: the record UD compares it with} for every record that measures SAL, found by the plan's own rule
    (:func:`.plan.reference_of`) on cells rebuilt from the records."""
    cells = [Cell(r["dataset"], r["attack"], r["defense"], r["model"], r["seed"], None if is_clean(r) else Poison(r["dataset"], r["attack"], (), 0),
                  tuple(sorted(r["config"].items())), r["reference"]) for r in recs]
    out = {}
    for c, r in zip(cells, recs):
        if r["config"].get("sal"):
            ref = reference_of(c, cells)
            out[r["id"]] = next((x for y, x in zip(cells, recs) if y is ref), None)
    return out


# ----------------------------------------------------------------------------------------------- pictures
def curves_figure(runs: list[tuple[int, list[dict]]], path: Path) -> Path:
    """Clean test accuracy (solid) and training accuracy (dashed) per epoch, one colour per seed."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for j, (seed, lines) in enumerate(runs):
        test = [(l["epoch"] + 1, 100 * l["test_acc"]) for l in lines if "test_acc" in l]
        if test:
            ax.plot(*zip(*test), "o-", ms=3, color=f"C{j}", label=f"seed {seed}: clean test")
        ax.plot([l["epoch"] + 1 for l in lines], [100 * l["train_acc"] for l in lines], "--", color=f"C{j}", alpha=0.6, label=f"seed {seed}: train")
    ax.set_xlabel("epoch"), ax.set_ylabel("accuracy (%)"), ax.set_ylim(0, 100), ax.grid(alpha=0.3), ax.legend(fontsize=7, ncol=2)
    ax.xaxis.get_major_locator().set_params(integer=True)
    return save_png(fig, path)


def _numeric(row: dict) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if k not in ("step", "epoch") and isinstance(v, (int, float)) and not isinstance(v, bool)}


def trace_figure(trace: list[dict], events: list[dict], path: Path, title: str) -> Path:
    """A staged defense's detector trace, read generically: every numeric field of the rows against ``epoch``, one
    panel per family (the part of the name before '/', plain names together), a dotted line at each transition."""
    plt = pyplot()
    families: dict[str, list[str]] = {}
    for row in trace:
        for k in _numeric(row):
            fam = families.setdefault(k.split("/", 1)[0] if "/" in k else "detectors", [])
            fam += [k] if k not in fam else []
    fig, axes = plt.subplots(1, max(1, len(families)), figsize=(4.2 * max(1, len(families)), 3.3), squeeze=False)
    for ax, (fam, keys) in zip(axes[0], families.items()):
        for k in keys:
            pts = [(t["epoch"], t[k]) for t in trace if isinstance(t.get(k), (int, float)) and isinstance(t.get("epoch"), (int, float))]
            if pts:
                ax.plot(*zip(*pts), lw=1.2, label=k.split("/", 1)[-1])
        for ev in events:
            if isinstance(ev.get("epoch"), (int, float)):
                ax.axvline(ev["epoch"], color="gray", ls=":", lw=1)
                ax.annotate(str(ev.get("stage", "")), (ev["epoch"], 0.02), xycoords=("data", "axes fraction"), rotation=90, fontsize=7, color="gray")
        ax.set_title(fam, fontsize=9), ax.set_xlabel("epoch"), ax.grid(alpha=0.3), ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10, y=1.03)
    return save_png(fig, path)


# ----------------------------------------------------------------------------------------------- HTML
def _page(title: str, body: str, root: str = "", script: bool = False) -> str:
    js = f"<script src='{root}report.js'></script>" if script else ""
    return (f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
            f"<title>{e(title)}</title><link rel='stylesheet' href='{root}report.css'>{js}</head>\n<body>\n{body}\n</body></html>\n")


def _table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    """An HTML table of already escaped cells."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table{f' class={cls!r}' if cls else ''}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(src: str, alt: str) -> str:
    return f"<p><img src='{e(src)}' alt='{e(alt)}'></p>"


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def _entry(rs: list[dict], href: str) -> tuple[str, str]:
    """(sort value, escaped HTML) of one table entry: accuracy ± spread, UD, seeds; or the cell's state."""
    done = [r for r in rs if r["status"] == "done"]
    if not done:
        return "", f"<a href='{e(href)}'>{e(cell_text(rs))}</a>"
    final, ud = stats(done, "final_test_acc"), stats(done, "ud")
    small = ([f"UD {spread_text(ud, 1.0, 2)}"] if ud else []) + [f"n = {len(done)}" + (f" of {len(rs)}" if len(done) < len(rs) else "")]
    return (f"{final[0]:.6f}", f"<a href='{e(href)}'>{e(spread_text(final))} / {e(spread_text(stats(done, 'peak_test_acc')))}"
            f"<br><small>{e(' · '.join(small))}</small></a>")


def index_html(recs: list[dict], title: str, caption: str, short: list[str], hrefs: dict) -> str:
    rows, cols, groups = grid(recs)
    names = ("dataset", "attack", "model")
    filters = "".join(
        f"<label>{k} <select data-filter='{k}'><option value=''>all</option>"
        + "".join(f"<option value='{e(v)}'>{e(Path(v).name if k == 'dataset' else v)}</option>" for v in values) + "</select></label>"
        for k, values in zip(names + ("defense",), [sorted({r[i] for r in rows}) for i in range(3)] + [cols]))
    body = []
    for row in rows:
        tds = "".join(f"<td>{e(Path(row[0]).name)}</td>" if i == 0 else f"<td>{e(row[i])}</td>" for i in range(3))
        for c in cols:
            rs = groups.get((row, c), [])
            v, inner = _entry(rs, hrefs[(row, c)]) if rs else ("", "—")
            tds += f"<td data-defense='{e(c)}' data-v='{v}'>{inner}</td>"
        attrs = " ".join(f"data-{k}='{e(row[i])}'" for i, k in enumerate(names))
        body.append(f"<tr {attrs}>{tds}</tr>")
    head = "".join(f"<th>{k}</th>" for k in names) + "".join(f"<th data-defense='{e(c)}'>{e(c)}</th>" for c in cols)
    failed = [r for r in recs if r["status"] == "failed"]
    parts = [f"<h1>{e(title)}</h1>", f"<p>{e(caption)} Click a column to sort (a defense sorts by final accuracy), an entry for its cell.</p>",
             f"<p class='filters'>{filters} <span id='shown' class='note'></span></p>",
             f"<table class='grid'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"]
    if short:
        parts.append("<p>In short:</p><ul>" + "".join(f"<li>{e(t)}</li>" for t in short) + "</ul>")
    if failed:
        parts.append("<p class='failed'>Failed cells:</p><ul>" + "".join(
            f"<li>{e(r['attack'])} × {e(r['defense'])} seed {r['seed']}: {e(str(r['error']))}</li>" for r in failed) + "</ul>")
    parts += [_img("grid.png", "grid heatmap"), _img("curves.png", "learning curves"),
              "<p class='note'>Also here: <a href='report.md'>report.md</a> (the table in Markdown).</p>"]
    return _page(title, "\n".join(parts), script=True)


class CellPages:
    """Writes the page of each table entry (and its pictures) under ``out``."""

    def __init__(self, store: Store, recs: list[dict], out: Path):
        self.store, self.recs, self.out = store, recs, out
        self.refs = references(recs)
        rows, cols, self.groups = grid(recs)
        self.hrefs = {(row, c): f"cells/{_slug(row, c)}.html" for row in rows for c in cols}
        self.entry_of = {r["id"]: key for key, rs in self.groups.items() for r in rs}

    def write_all(self) -> dict:
        for key, rs in self.groups.items():
            self.write(key, rs)
        return self.hrefs

    def write(self, key: tuple, rs: list[dict]) -> Path:
        (dataset, attack, model), defense = key
        name = _slug(*key)
        pics = self.out / "cells" / name
        title = f"{attack} × {defense} — {model} on {describe(dataset)}"
        runs = sorted(rs, key=lambda r: r["seed"])
        parts = [f"<p><a href='../report.html'>← the table</a></p><h1>{e(title)}</h1>", self._seeds(runs), self._curves(runs, pics, name),
                 self._ud(runs, pics, name), self._pst(runs, pics, name), self._poison(runs), self._config(runs)]
        return atomic_write_text(self.out / "cells" / f"{name}.html", _page(title, "\n".join(p for p in parts if p), root="../"))

    def _seeds(self, runs: list[dict]) -> str:
        rows = [[str(r["seed"]), e(r["status"]) + (f" <small class='failed'>{e(str(r['error']))}</small>" if r["error"] else ""),
                 _pct(r["final_test_acc"]), _pct(r["peak_test_acc"]), "—" if r["ud"] is None else f"{r['ud']:.3f}",
                 "—" if r["lp"] is None else f"{r['lp']:.2f}", f"{r['epochs_done'] if r['status'] != 'done' else r['epochs']}/{r['epochs']}",
                 "—" if not r["seconds"] else f"{r['seconds'] / 60:.1f}", f"<code>{e(r['id'])}</code>", f"<code>{e(str(r['run_dir'] or '—'))}</code>"]
                for r in runs]
        done = [r for r in runs if r["status"] == "done"]
        if len(done) > 1:
            agg = [stats(done, k) for k in ("final_test_acc", "peak_test_acc", "ud", "lp")]
            rows.append([f"<b>mean ± sd (n = {len(done)})</b>", ""] + [e(spread_text(a)) if a else "—" for a in agg[:2]]
                        + [e(spread_text(a, 1.0, 3 - i)) if a else "—" for i, a in enumerate(agg[2:])] + ["", "", "", ""])
        return "<h2>Seeds</h2>" + _table(["seed", "status", "final acc (%)", "peak acc (%)", "UD", "#LP", "epochs", "minutes", "cell", "run directory"], rows) \
            + "<p class='note'>Accuracies: clean test split. sd: sample standard deviation over the finished seeds.</p>"

    def _config(self, runs: list[dict]) -> str:
        keys = sorted({k for r in runs for k in r["config"]} - {"data"})  # data: the cell's dataset or poison (above), not the option's default
        vals = {k: sorted({json.dumps(r["config"].get(k)) for r in runs}) for k in keys}
        rows = [[e(k), e(", ".join(v))] for k, v in vals.items()]
        differ = [k for k, v in vals.items() if len(v) > 1]
        return (f"<h2>Training configuration</h2><details><summary>{len(rows)} options of <code>pst-fast train</code>"
                f"{' (differ across seeds: ' + e(', '.join(differ)) + ')' if differ else ''}</summary>" + _table(["option", "value"], rows, "kv") + "</details>")

    def _run_data(self, r: dict) -> str | None:
        doc = _json(Path(r["run_dir"]) / "config.json") if r["run_dir"] else None
        return doc["train"].get("data") if doc and isinstance(doc.get("train"), dict) else None

    def _poison(self, runs: list[dict]) -> str:
        from .. import data

        path = next((p for p in map(self._run_data, runs) if p and p != runs[0]["dataset"]), None)
        if path is None:
            return "" if is_clean(runs[0]) else "<h2>Poison</h2><p class='note'>Not generated yet.</p>"
        try:
            ds = data.load(path, "train", verify=False)
        except PstFastError as err:
            return f"<h2>Poison</h2><p class='failed'>{e(str(err))}</p>"
        meta = ds.meta
        pic = self.out / "poisons" / f"{Path(path).name}.png"
        if not pic.is_file():  # a poison never changes
            from ..data.grid import save_preview

            save_preview(ds, pic, 8)
        rows = [[e(k), e(json.dumps(v))] for k, v in sorted((meta.get("params") or {}).items())]
        gen = meta.get("generation") or {}
        rows += [[e(f"generation: {k}"), e(json.dumps(v))] for k, v in sorted(gen.items())]
        return (f"<h2>Poison</h2><p>{e(str(meta.get('attack')))} ({e(str(meta.get('reference', '')))}), norm {e(str(meta.get('norm')))}, "
                f"seed {e(str(meta.get('seed')))}: <code>{e(path)}</code></p>" + _table(["parameter", "value"], rows, "kv")
                + _img(f"../poisons/{pic.name}", "clean, poisoned and amplified delta")
                + "<p class='note'>Rows: training images spread over the classes; columns: clean, poisoned, δ amplified ×15 around grey.</p>")

    def _curves(self, runs: list[dict], pics: Path, name: str) -> str:
        series = [(r["seed"], run_lines(self.store, r)) for r in runs]
        series = [(s, l) for s, l in series if l]
        if not series:
            return ""
        pic = pics / "curves.png"
        if not _fresh(pic, runs):
            curves_figure(series, pic)
        return "<h2>Clean accuracy per epoch</h2>" + _img(f"{name}/curves.png", "accuracy per epoch")

    def _ud(self, runs: list[dict], pics: Path, name: str) -> str:
        from ..metrics.plot import plot_sal_grid
        from ..metrics.record import SALRecord
        from ..metrics.ud import unlearnable_distance

        parts = []
        for r in runs:
            if not (r["run_dir"] and (Path(r["run_dir"]) / "sal.json").is_file()):
                continue
            ref = self.refs.get(r["id"])
            head = f"<h3>seed {r['seed']}</h3>"
            pic = pics / f"sal-seed{r['seed']}.png"
            try:
                rec = SALRecord.load(r["run_dir"])
                if ref is None or ref["status"] != "done" or not ref["run_dir"]:
                    if not _fresh(pic, [r]):
                        plot_sal_grid([rec], [f"this cell, seed {r['seed']}"], pic)
                    parts.append(head + "<p class='note'>No finished UD reference: SAL alone.</p>" + _img(f"{name}/{pic.name}", "SAL heatmap"))
                    continue
                rep = unlearnable_distance(ref["run_dir"], [r["run_dir"]])
                same = ref["id"] == r["id"]
                recs = [rec] if same else [SALRecord.load(ref["run_dir"]), rec]
                if not _fresh(pic, [r, ref]):
                    plot_sal_grid(recs, ([] if same else [f"reference: {ref['attack']} × {ref['defense']}, seed {ref['seed']}"]) + [f"this cell, seed {r['seed']}"],
                                  pic, beta=rep["beta"])
            except PstFastError as err:
                parts.append(head + f"<p class='failed'>{e(str(err))}</p>")
                continue
            run = rep["runs"][0]
            ref_key = self.entry_of.get(ref["id"])
            link = f"<a href='../{e(self.hrefs[ref_key])}'>{e(ref['attack'])} × {e(ref['defense'])}</a>" if ref_key and not same else "this cell itself"
            lam = _table(["epoch"] + [str(x) for x in rep["epochs"]],
                         [["λ reference"] + [str(x) for x in rep["clean"]["lambda"]], ["λ this cell"] + [str(x) for x in run["lambda"]]])
            parts.append(head + f"<p>UD = Σλ / Σλ<sub>reference</sub> = {sum(run['lambda'])} / {sum(rep['clean']['lambda'])} = "
                         f"<b>{run['ud']:.3f}</b>; #LP {run['lp']:.2f}; β = {rep['beta']:.4g}. Reference: {link} (seed {ref['seed']}, "
                         f"cell <code>{e(ref['id'])}</code>).</p>" + _img(f"{name}/{pic.name}", "SAL heatmap with the counted layers") + lam)
        if not parts:
            return ""
        return ("<h2>SAL and UD</h2><p class='note'>Per-layer SAL (rows: layers, shallow to deep; columns: measured epochs). "
                "β is the mean per-epoch 2-means midpoint of the reference's SAL; a cyan dot marks a layer above β, which λ(t) counts. "
                "UD = 1 for the reference; lower = less learnable.</p>" + "".join(parts))

    def _pst(self, runs: list[dict], pics: Path, name: str) -> str:
        parts = []
        for r in runs:
            d = Path(r["run_dir"]) if r["run_dir"] else None
            doc = _json(d / "pst.json") if d else None
            head = f"<h3>seed {r['seed']}</h3>"
            pic = pics / f"pst-seed{r['seed']}.png"
            trace = [t for t in (doc or {}).get("trace", []) if isinstance(t, dict)]
            events = [v for v in (doc or {}).get("events", []) if isinstance(v, dict)]
            if trace:
                if not _fresh(pic, [r]):
                    trace_figure(trace, events, pic, f"seed {r['seed']}: detectors (stage transitions dotted)")
            elif d and (d / "pst.png").is_file():
                atomic_write(pic, lambda tmp: shutil.copyfile(d / "pst.png", tmp))
            else:
                continue
            parts.append(head + _img(f"{name}/{pic.name}", "PST detector trace") + self._events(events, trace))
        return "<h2>PST: detectors and transitions</h2>" + "".join(parts) if parts else ""

    @staticmethod
    def _events(events: list[dict], trace: list[dict]) -> str:
        if not events:
            stage = trace[-1].get("stage") if trace else None
            return f"<p class='note'>No transition{f'; the run stayed in stage {e(str(stage))}' if stage else ''}.</p>"
        keys = [k for k in dict.fromkeys(k for v in events for k in v) if k not in ("epoch", "stage", "actions")]
        num = lambda v: f"{v:.4g}" if isinstance(v, float) else "+".join(map(str, v)) if isinstance(v, list) else str(v)  # noqa: E731
        rows = [[num(v.get("epoch", "")), e(str(v.get("stage", "")))] + [e(num(v[k])) if v.get(k) is not None else "—" for k in keys]
                + [e("; ".join(map(str, v.get("actions") or [])))] for v in events]
        return _table(["epoch", "stage entered"] + [e(k) for k in keys] + ["actions"], rows)


def write_site(store: Store, recs: list[dict], out: Path, title: str, caption: str, short: list[str]) -> Path:
    """Cell pages, the assets and report.html in ``out``; returns report.html's path."""
    hrefs = CellPages(store, recs, out).write_all()
    for name in ASSETS:
        atomic_write_text(out / name, (Path(__file__).parent / name).read_text())
    return atomic_write_text(out / "report.html", index_html(recs, title, caption, short, hrefs))

