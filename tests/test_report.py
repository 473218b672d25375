"""The report a researcher opens: the static site of a small two-seed sweep (a page per table entry, every picture
present, seed spreads), rendered by headless Chromium; the TensorBoard export read back with tensorboard's own
reader; the sweep's per-job progress lines; files readable by others under umask 022."""
import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from cdp import Browser, find_chromium
from test_sweep import tiny_spec

from pst_fast.cli import main


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """random noise × standard (with SAL) and PST (a transition at its first detector pass) × seeds 0 and 1, plus the
    clean UD references: 6 cells of 2 epochs on 96 images, run as a user runs it (stdout not a terminal), with a live
    TensorBoard export; then its report."""
    root = tmp_path_factory.mktemp("report")
    spec = tiny_spec(root / "noise", root)  # test_sweep's, made a two-seed grid of one poison × standard and PST
    spec.write_text(spec.read_text().replace("[attacks.clean]\n", "").replace('models = ["fastnet-small"]', 'models = ["fastnet-small"]\nseeds = [0, 1]')
                    .replace('"ud"]', '"ud"]\nud_defenses = ["standard"]\nsal_args = "subset=64,rounds=1"')
                    .replace("[defenses.cutout]", '[defenses.pst]\ndetector = "train-acc"\nthreshold = 0\npatience = 1\ncheck_every = 1'))
    db, tb, site = root / "r.db", root / "tb", root / "site"
    run = subprocess.run([sys.executable, "-m", "pst_fast.cli", "sweep", "run", str(spec), "--db", str(db), "--tensorboard", str(tb)],
                         capture_output=True, text=True, timeout=600, env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert main(["report", str(db), "--out", str(site)]) == 0
    return SimpleNamespace(root=root, db=db, tb=tb, site=site, stdout=run.stdout)


def _rows(db):
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    return con.execute("SELECT * FROM cells").fetchall()


def _links(page: Path) -> list[str]:
    return re.findall(r"(?:src|href)='([^'#]+)'", page.read_text())


@pytest.mark.slow
def test_site_has_a_page_per_table_entry_with_every_picture(sweep):
    rows = _rows(sweep.db)
    assert len(rows) == 6 and all(r["status"] == "done" for r in rows)
    index = sweep.site / "report.html"
    pages = sorted({l for l in _links(index) if l.startswith("cells/")})
    assert len(pages) == 3  # random × standard, random × pst, the clean reference
    for page in [index] + [sweep.site / p for p in pages]:
        missing = [l for l in _links(page) if not (page.parent / l).is_file()]
        assert not missing, f"{page.name}: {missing}"
    md = (sweep.site / "report.md").read_text()
    assert "mean ± sample standard deviation over n = 2 finished seeds" in md
    assert re.search(r"\| random \| \d+\.\d ± \d+\.\d / \d+\.\d ± \d+\.\d \(UD \d\.\d\d ± \d\.\d\d\) \| \d+\.\d ± \d+\.\d / ", md)
    text = {p.split("--")[0].split("/")[-1] + "×" + p.split("--")[1]: (sweep.site / p).read_text() for p in pages}
    std, pst, ref = text["random×standard"], text["random×pst"], text["clean×standard"]
    assert "UD = Σλ / Σλ<sub>reference</sub>" in std and "λ reference" in std and "sal-seed1.png" in std and "../poisons/" in std
    assert "clean × standard</a>" in std  # links its reference's page
    uds = [r["ud"] for r in rows if r["attack"] == "random" and r["defense"] == "standard"]
    assert len(uds) == 2 and all(f"<b>{ud:.3f}</b>" in std for ud in uds)  # recomputed against the reference the sweep used
    assert "this cell itself" in ref and "<h2>Poison</h2>" not in ref
    assert "PST: detectors and transitions" in pst and "pst-seed0.png" in pst and "<td>hold-1</td>" in pst and "<td>stem</td>" in pst and "freeze stem" in pst
    assert "mean ± sd (n = 2)" in pst


@pytest.mark.slow
def test_sweep_shows_each_jobs_progress_as_plain_lines(sweep):
    """stdout was not a terminal: each cell's epochs come as plain lines naming the cell."""
    for seed in (0, 1):
        for defense in ("standard", "pst"):
            lines = re.findall(rf"random × {defense} \(fastnet-small, seed {seed}\): epoch +(\d)/2 +loss .*test acc", sweep.stdout)
            assert lines == ["1", "2"], sweep.stdout[-2000:]


@pytest.mark.slow
def test_tensorboard_export_reads_back_with_tensorboards_reader(sweep, tmp_path):
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    from pst_fast.sweep.report import tensorboard_name

    assert main(["report", str(sweep.db), "--format", "json", "--tensorboard", str(tmp_path / "tb")]) == 0
    con = sqlite3.connect(sweep.db)
    for r in _rows(sweep.db):
        name = tensorboard_name(r["dataset"], r["attack"], r["defense"], r["model"], r["seed"], bool(r["reference"]))
        lines = [json.loads(l) for (l,) in con.execute("SELECT line FROM epochs WHERE cell=? ORDER BY epoch", (r["id"],))]
        seen = []
        for logdir in (sweep.tb / name, tmp_path / "tb" / name):  # written live by the sweep, and exported afterwards
            acc = ea.EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
            acc.Reload()
            tags = acc.Tags()
            got = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in tags["scalars"]}
            assert got["acc/test"] == [(l["epoch"] + 1, pytest.approx(l["test_acc"], rel=1e-6)) for l in lines]
            assert got["loss/train"] == [(l["epoch"] + 1, pytest.approx(l["train_loss"], rel=1e-6)) for l in lines]
            sal = sorted(t for t in tags["scalars"] if t.startswith("sal/"))
            assert len(sal) == (len(lines[0]["sal"]) if r["defense"] == "standard" else 0)
            if r["defense"] == "pst":
                assert got["pst/train-acc"][0] == (1, pytest.approx(lines[0]["pst"]["train-acc"], rel=1e-6))
                texts = {t: [(e.step, e.tensor_proto.string_val[0].decode()) for e in acc.Tensors(t)] for t in tags["tensors"]}
                assert texts["stage"] == [(1, "hold-3")] and texts["events"][0][0] == 1 and "stage hold-1 at epoch" in texts["events"][0][1]
                assert "hold=stem" in texts["events"][0][1]
            seen.append(got)
        assert seen[0] == seen[1]


@pytest.mark.slow
def test_site_files_are_readable_by_others_under_umask_022(sweep, tmp_path):
    from pst_fast.sweep.report import write_report

    old = os.umask(0o022)
    try:
        write_report(sweep.db, tmp_path / "site")
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "site").rglob("*") if p.is_file()]
    assert len(files) > 10
    private = [str(p.relative_to(tmp_path)) for p in files if stat.S_IMODE(p.stat().st_mode) & 0o044 != 0o044]
    assert not private


@pytest.fixture(scope="module")
def browser():
    exe = find_chromium()
    if exe is None:
        why = "chromium not installed (apt-get install chromium; .ci/run installs it): the report is not rendered in a browser"
        if os.environ.get("PST_FAST_REQUIRE_BROWSER"):  # set by .ci/run: CI must render the report, never skip it
            pytest.fail(why)
        pytest.skip(why)
    with tempfile.TemporaryDirectory() as profile:
        b = Browser(exe, profile)
        try:
            yield b
        finally:
            b.close()


IMAGES = "[...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src'))"


def test_browser_check_sees_missing_files_and_script_errors(browser, tmp_path):
    """The browser test below can fail: a page with a missing picture and a script error is caught."""
    (tmp_path / "bad.html").write_text("<!doctype html><img src='gone.png'><script>notAFunction()</script>")
    s = browser.open((tmp_path / "bad.html").as_uri())
    problems = browser.problems(s)
    assert browser.evaluate(s, IMAGES) == ["gone.png"]
    assert any("notAFunction" in p for p in problems) and any("ERR_FILE_NOT_FOUND" in p for p in problems)


@pytest.mark.slow
def test_browser_renders_the_table_every_cell_page_and_every_picture(sweep, browser):
    s = browser.open((sweep.site / "report.html").as_uri())
    assert browser.evaluate(s, "document.querySelectorAll('table.grid tbody tr').length") == 2
    hrefs = browser.evaluate(s, "[...document.querySelectorAll('table.grid a')].map(a => a.href)")
    assert len(hrefs) == 3 and browser.evaluate(s, IMAGES) == [] and browser.problems(s) == []
    # the table's own script: filter by attack, then sort by a defense column (descending on the second click)
    shown = "[...document.querySelectorAll('table.grid tbody tr')].filter(r => !r.hidden).map(r => r.dataset.attack)"
    browser.evaluate(s, "const f = document.querySelector(\"select[data-filter='attack']\"); f.value = 'random'; f.dispatchEvent(new Event('change'))")
    assert browser.evaluate(s, shown) == ["random"]
    assert browser.evaluate(s, "document.getElementById('shown').textContent") == "1 of 2 rows shown"
    browser.evaluate(s, "const g = document.querySelector(\"select[data-filter='defense']\"); g.value = 'pst'; g.dispatchEvent(new Event('change'))")
    assert browser.evaluate(s, "[...document.querySelectorAll('table.grid [data-defense]')].filter(c => !c.hidden).length") == 3
    order = "[...document.querySelectorAll('table.grid tbody tr')].map(r => r.dataset.attack)"
    head = "[...document.querySelectorAll('table.grid th')].find(h => h.textContent === 'attack')"
    browser.evaluate(s, f"{head}.click()")
    assert browser.evaluate(s, order) == ["clean", "random"]
    browser.evaluate(s, f"{head}.click()")
    assert browser.evaluate(s, order) == ["random", "clean"]
    assert browser.problems(s) == []
    for url in hrefs:
        page = browser.open(url)
        assert browser.evaluate(page, "document.querySelector('h1').textContent")
        assert browser.evaluate(page, "document.images.length") >= 2
        assert browser.evaluate(page, IMAGES) == [] and browser.problems(page) == [], url


def test_crc32c_and_event_files_read_back(tmp_path):
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    from pst_fast.tensorboard import crc32c, export_run

    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    lines = [{"epoch": 0, "step": 3, "train_acc": 0.5, "test_acc": 0.25, "pst_stage": "learn", "pst": {"acm1/s1": 0.1, "note": "x"}},
             {"epoch": 1, "step": 6, "train_acc": 0.75, "pst_stage": "hold", "events": ["hold @1.50"], "sal": [0.5, 0.25], "flag": True}]
    export_run(lines, tmp_path / "run")
    export_run(lines[:1], tmp_path / "run")  # a resumed run rewrites an epoch instead of adding it again
    acc = ea.EventAccumulator(str(tmp_path / "run"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    scalars = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    assert scalars == {"acc/train": [(1, 0.5), (2, 0.75)], "acc/test": [(1, 0.25)], "pst/acm1/s1": [(1, pytest.approx(0.1))],
                       "sal/00.0": [(2, 0.5)], "sal/01.1": [(2, 0.25)]}
    texts = {t: [(e.step, e.tensor_proto.string_val[0].decode()) for e in acc.Tensors(t)] for t in acc.Tags()["tensors"]}
    assert texts == {"stage": [(1, "learn"), (2, "hold")], "events": [(2, "hold @1.50")]}


def test_transitions_are_read_generically():
    """PST's trace and events are read as dicts: any numeric detector field, any extra event key."""
    from pst_fast.sweep.site import CellPages
    from pst_fast.tensorboard import epoch_texts, event_text

    ev = {"epoch": 1.25, "step": 50, "stage": "hold", "detector": "new-score", "value": 0.71, "actions": ["freeze a+b"], "budget": 3}
    assert event_text(ev) == "stage hold at epoch 1.25 (step=50, detector=new-score, value=0.71, budget=3): freeze a+b"
    assert epoch_texts({"epoch": 1, "pst_stage": "hold"}, "learn", [ev, {"epoch": 0.5, "stage": "x"}]) == \
        {"stage": "hold", "events": event_text(ev)}
    table = CellPages._events([ev, {"epoch": 3.0, "stage": "thaw", "actions": []}], [])
    assert "<th>budget</th>" in table and "<td>new-score</td>" in table and "<td>thaw</td>" in table


def test_trace_figure_draws_any_numeric_fields(tmp_path):
    from pst_fast.sweep.site import trace_figure

    trace = [{"step": s, "epoch": s / 4, "stage": "learn" if s < 3 else "hold", "score": s / 10, "grp/a": 1.0 - s / 10, "label": "z"}
             for s in range(1, 6)]
    assert trace_figure(trace, [{"epoch": 0.75, "stage": "hold"}], tmp_path / "t.png", "t").stat().st_size > 1000


def test_job_progress_goes_to_its_file_and_other_text_to_stderr(tmp_path, capsys):
    from tqdm.auto import tqdm

    from pst_fast.sweep.progress import JobLines, reporting

    said = []
    jobs = JobLines(tmp_path, live=False, say=said.append)
    path = jobs.start("job1", "em of d")
    with reporting(path) as shown:
        assert shown
        for _ in tqdm(range(3), desc="em", mininterval=0):
            tqdm.write("round done")
        bar = tqdm(total=5, desc="inner", mininterval=0)
        bar.update(2)
        bar.set_postfix(acc="0.812")
        print("a warning", file=sys.stderr)
        doc = json.loads(Path(path).read_text())
        bar.close()
    assert doc["lines"] == ["round done"] * 3
    assert json.loads(Path(path).read_text())["status"].startswith("inner:  40%") and "acc=0.812" in json.loads(Path(path).read_text())["status"]
    assert capsys.readouterr().err == "a warning\n"  # the bars went to the progress file, not to the terminal
    jobs.finish("job1")
    assert said == ["  em of d: round done"] * 3 and not Path(path).exists()


def test_job_lines_on_a_terminal_draw_one_bar_per_job(tmp_path, capsys):
    from pst_fast.sweep.progress import JobLines

    jobs = JobLines(tmp_path, live=True, say=print)
    path = jobs.start("c1", "lsp × pst (fastnet, seed 0)")
    Path(path).parent.mkdir()
    Path(path).write_text(json.dumps({"status": "epoch 2/8:  45%|####5     | 35/78 [acc=0.41]", "lines": ["epoch 1/8 ..."]}))
    jobs.poll()
    jobs.finish("c1")
    assert "lsp × pst (fastnet, seed 0): epoch 2/8:  45%" in capsys.readouterr().err


def test_table_entries_show_mean_and_spread_over_seeds():
    from pst_fast.sweep.report import markdown

    def rec(seed, acc, ud, status="done"):
        return {"dataset": "d", "attack": "em", "defense": "standard", "model": "m", "seed": seed, "status": status, "final_test_acc": acc,
                "peak_test_acc": acc and acc + 0.1, "ud": ud, "reference": False, "error": None, "epochs": 8, "epochs_done": 0}

    text = markdown([rec(0, 0.2, 0.4), rec(1, 0.3, 0.5), rec(2, None, None, "pending")], "t")
    assert "| em | 25.0 ± 7.1 / 35.0 ± 7.1 (UD 0.45 ± 0.07) [2/3 seeds] |" in text
    assert "mean ± sample standard deviation over n = 2 finished seeds" in text
