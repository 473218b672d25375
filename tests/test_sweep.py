"""Sweep specs: the example parses and expands; bad specs are refused before anything runs, naming line and key."""
import dataclasses
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import write_noise_dataset

from pst_fast.cli import main
from pst_fast.sweep import EXAMPLE_SPEC, QUICKSTART_SPEC, SpecError, expand, load_spec, parse_spec

BASE = """
[sweep]
seeds = [0]
[train]
epochs = 2
[attacks.lsp]
[defenses.standard]
"""


def test_example_spec_expands_to_the_documented_grid(capsys):
    spec = load_spec(EXAMPLE_SPEC)
    cells = expand(spec)
    assert len({c.id for c in cells}) == len(cells)
    poisons = {c.poison.id for c in cells if c.poison}
    assert len(cells) == 3 * 3 * 1 * 2 + 2 and sum(c.reference for c in cells) == 2  # + a clean UD reference per seed
    assert len(poisons) == 3 and all(sum(c.poison is not None and c.poison.id == p for c in cells) == 6 for p in poisons)
    assert [c.id for c in expand(load_spec(EXAMPLE_SPEC))] == [c.id for c in cells]  # content ids are stable
    # ... across versions too: the official defaults of 0.2 (issue 18) rename the poisons they change, and asking for the
    # earlier algorithm by its parameters finds the names poisons made before had (a new parameter at its default renames nothing)
    assert {c.attack: c.poison.id for c in cells if c.poison} == {"em": "115391c8f7be106c", "lsp": "b4dceac92ab40dba", "ops": "af9181e368b071d0"}
    earlier = dataclasses.replace(spec, attacks=[("em", "em", {"max_rounds": 2, "delta_init": "uniform", "grad_clip": 0.0}),
                                                 ("lsp", "lsp", {"rounding": "trunc"}), ("ops", "ops", {"score": "channel-sum"})])
    assert {c.attack: c.poison.id for c in expand(earlier) if c.poison} == {"em": "246a2cd1bd70e5de", "lsp": "d672bc201eb49484", "ops": "af139f3a9efe5434"}
    assert main(["sweep", "init"]) == 0 and "[attacks.em]" in capsys.readouterr().out
    assert main(["sweep", "plan", str(EXAMPLE_SPEC)]) == 0
    assert "poison" in capsys.readouterr().out


def test_quickstart_amp_sets_training_and_surrogate_attacks(monkeypatch, tmp_path, capsys):
    import pst_fast.sweep.run as run_mod
    from pst_fast.sweep import QUICKSTART_SPEC
    from pst_fast.sweep.spec import with_amp

    spec = load_spec(QUICKSTART_SPEC)
    assert with_amp(spec, "auto") is spec
    on = with_amp(spec, "on")
    assert on.train["amp"] == "on" and dict((a, ov) for a, _, ov in on.attacks) == {"em": {"max_rounds": 5, "amp": "on"}, "lsp": {}}
    ids = [{c.attack: c.poison.id for c in expand(s) if c.poison} for s in (spec, on)]
    assert ids[0]["em"] != ids[1]["em"] and ids[0]["lsp"] == ids[1]["lsp"]  # a bf16 EM poison; LSP has no surrogate
    seen = {}
    monkeypatch.setattr(run_mod, "run_sweep", lambda s, db, **kw: seen.update(spec=s, db=db) or SimpleNamespace(cells=list))
    monkeypatch.setattr("pst_fast.cli.print_report", lambda db, out: seen.update(out=out))
    monkeypatch.chdir(tmp_path)
    assert main(["quickstart", "--amp", "on"]) == 0
    assert seen["db"] == "quickstart-amp-on.db" and seen["out"] == "quickstart-amp-on-report" and seen["spec"].train["amp"] == "on"


def test_ud_adds_the_clean_reference_once():
    spec = parse_spec(BASE.replace("seeds = [0]", 'seeds = [0]\nmetrics = ["accuracy", "ud"]'))
    cells = expand(spec)
    assert [c.reference for c in cells] == [False, True]
    assert dict(cells[0].train)["sal"] == "fast" and cells[1].poison is None


def test_ud_defenses_limit_sal_to_their_cells_and_quickstart_spec_parses():
    spec = parse_spec(BASE.replace("seeds = [0]", 'seeds = [0]\nmetrics = ["accuracy", "ud"]\nud_defenses = ["standard"]\nsal_args = "every=2"')
                      + "[defenses.cutout]\n")
    cells = expand(spec)
    assert [(c.defense, dict(c.train)["sal"], dict(c.train)["sal_args"]) for c in cells] == [
        ("standard", "fast", "every=2"), ("cutout", "", ""), ("standard", "fast", "every=2")]
    quick = expand(load_spec(QUICKSTART_SPEC))
    assert len(quick) == 7 and sum(bool(dict(c.train)["sal"]) for c in quick) == 3


def test_alias_runs_one_defense_with_other_parameters():
    spec = parse_spec(BASE + '[defenses.pst-late]\ndefense = "pst"\nthreshold = 0.5\n')
    cells = expand(spec)
    assert [dict(c.train)["defense_args"] for c in cells] == ["", "threshold=0.5"]


@pytest.mark.parametrize("text,match", [
    (BASE + "[attacks.emm]\n", r"<spec>:8: \[attacks.emm\]: unknown attack 'emm'"),
    (BASE.replace("epochs = 2", "epoch = 2"), r"<spec>:5: \[train\] epoch: unknown key; expected one of data, loader, "),
    (BASE.replace("epochs = 2", 'epochs = "two"'), r"<spec>:5: \[train\] epochs='two': expected an integer$"),
    (BASE + "[attacks.em]\nmax_rounds = 2.5\n", r"<spec>:\d+: \[attacks.em\] max_rounds=2.5: expected an integer"),
    (BASE + '[attacks.em]\namp = "fast"\n', r"<spec>:\d+: \[attacks.em\] amp='fast': expected one of auto, on, off"),
    (BASE + "[defenses.pst]\nthaw = 3\n", r"\[defenses.pst\] thaw: unknown key; expected one of"),
    (BASE.replace("seeds = [0]", "seeds = []"), r"\[sweep\] seeds: is empty"),
    (BASE.replace("[attacks.lsp]", ""), r"no \[attacks.NAME\] section"),
    (BASE.replace("seeds = [0]", 'seed = [0]'), r"<spec>:3: \[sweep\] seed: unknown key"),
    (BASE.replace("seeds = [0]", 'models = ["resnet19"]'), r"\[sweep\] models: 'resnet19' is not a registered model"),
    (BASE + "[extra]\n", r"\[extra\]: unknown section"),
    (BASE.replace("seeds = [0]", 'ud_defenses = ["pst"]'), r"\[sweep\] ud_defenses: 'pst' is not a \[defenses.NAME\]"),
    (BASE.replace("seeds = [0]", 'sal_args = "rounds=x"'), r"\[sweep\] sal_args: --sal-args rounds='x'"),
    (BASE.replace("epochs = 2", "seed = 3"), r"\[train\] seed: not a training option a sweep sets"),
    ("[sweep\n", r"not valid TOML"),
])
def test_bad_specs_are_refused_with_line_and_key(text, match):
    with pytest.raises(SpecError, match=match) as e:
        parse_spec(text)
    assert "\n" not in str(e.value)


def test_plan_cli_reports_spec_errors(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(BASE.replace("epochs = 2", "epochs = -1"))
    assert main(["sweep", "plan", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:5: [train] epochs=-1: expected an integer >= 1" in err and err.count("\n") == 1


def tiny_spec(root, tmp_path):
    data = write_noise_dataset(root, 96, 32)
    spec = tmp_path / "spec.toml"
    spec.write_text(f"""
[sweep]
datasets = ["{data}"]
models = ["fastnet-small"]
metrics = ["accuracy", "ud"]
[train]
epochs = 2
batch_size = 32
warmup_epochs = 0.5
[attacks.clean]
[attacks.random]
[defenses.standard]
[defenses.cutout]
[resources]
workers = 2
""")
    return spec


def results(db):
    con = sqlite3.connect(db)
    cells = {r[0]: r[1:] for r in con.execute("SELECT id, status, final_test_acc, peak_test_acc, ud FROM cells")}
    return cells, con.execute("SELECT cell, COUNT(*) FROM epochs GROUP BY cell").fetchall()


def test_sweep_killed_with_sigkill_resumes_to_the_same_results(tmp_path):
    spec = tiny_spec(tmp_path / "noise", tmp_path)
    assert main(["sweep", "run", str(spec), "--db", str(tmp_path / "ref.db")]) == 0
    ref, ref_epochs = results(tmp_path / "ref.db")
    assert len(ref) == 4 and all(r[0] == "done" and r[3] is not None for r in ref.values())

    db = tmp_path / "killed.db"
    proc = subprocess.Popen([sys.executable, "-m", "pst_fast.cli", "sweep", "run", str(spec), "--db", str(db)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        try:
            if db.exists() and any(r[0] == "done" for r in results(db)[0].values()):
                break
        except sqlite3.OperationalError:  # the sweep has created the file but not yet its tables
            pass
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial, _ = results(db)
    assert 1 <= sum(r[0] == "done" for r in partial.values()) < 4
    assert main(["report", str(db), "--out", str(tmp_path / "partial")]) == 0  # a partial sweep reports what is done
    assert re.search(r"\| (pending|epoch 1/2) \|", (tmp_path / "partial" / "report.md").read_text())  # the rest is marked
    assert main(["sweep", "run", str(spec), "--db", str(db)]) == 0
    resumed, epochs = results(db)
    assert resumed == ref and sorted(epochs) == sorted(ref_epochs)


def test_report_renders_and_exports_records(tmp_path, capsys):
    spec = tiny_spec(tmp_path / "noise", tmp_path)
    spec.write_text(spec.read_text().replace('metrics = ["accuracy", "ud"]', 'metrics = ["accuracy"]').replace("[defenses.cutout]\n", ""))
    db = tmp_path / "r.db"
    assert main(["sweep", "run", str(spec), "--db", str(db)]) == 0
    capsys.readouterr()
    assert main(["report", str(db), "--format", "json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert len(recs) == 2 and {"attack", "defense", "model", "seed", "status", "final_test_acc", "peak_test_acc", "ud"} <= set(recs[0])
    assert main(["report", str(db), "--format", "csv"]) == 0
    assert capsys.readouterr().out.count("\n") == 3
    assert main(["report", str(db), "--out", str(tmp_path / "rep")]) == 0
    for f in ("report.md", "report.html", "grid.png", "curves.png"):
        assert (tmp_path / "rep" / f).stat().st_size > 0
    assert "| clean |" in (tmp_path / "rep" / "report.md").read_text()
    assert main(["report", str(tmp_path / "none.db")]) == 2


def test_report_table_and_summary_read_from_finished_cells_only():
    from pst_fast.sweep.report import markdown, summary

    def rec(attack, defense, acc, ud=None, status="done", done=0):
        return {"dataset": "d", "attack": attack, "defense": defense, "model": "m", "seed": 0, "status": status, "final_test_acc": acc,
                "peak_test_acc": acc, "ud": ud, "reference": False, "error": None, "epochs": 8, "epochs_done": done}

    recs = [rec("em", "standard", 0.2, 0.3), rec("em", "pst", 0.6), rec("em", "iss", None, status="queued", done=3),
            rec("lsp", "standard", None, status="pending"), rec("clean", "standard", 0.7, 1.0)]
    assert summary(recs) == ["d, m: clean data with standard training reaches 70.0%.",
                             "em: standard 20.0% (50.0 points below clean), UD 0.30; best defense pst 60.0% (+40.0)."]
    text = markdown(recs, "t")
    assert "(dataset d, model m)" in text and "| attack | standard | pst | iss |" in text
    rows = [l for l in text.splitlines() if l.startswith("| ")][1:]
    assert rows == ["| clean | 70.0 / 70.0 (UD 1.00) | — | — |", "| em | 20.0 / 20.0 (UD 0.30) | 60.0 / 60.0 | epoch 3/8 |",
                    "| lsp | pending | — | — |"]


def test_ray_executor_gives_the_local_results(tmp_path):
    """A local Ray instance (CPU only) runs the same cells; every number and every epoch line matches the local pool."""
    ray = pytest.importorskip("ray")
    spec = tiny_spec(tmp_path / "noise", tmp_path)
    spec.write_text(spec.read_text().replace('metrics = ["accuracy", "ud"]', 'metrics = ["accuracy"]'))
    assert main(["sweep", "run", str(spec), "--db", str(tmp_path / "local.db")]) == 0
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # its own instance, even beside a cluster
    try:
        assert main(["sweep", "run", str(spec), "--db", str(tmp_path / "ray.db"), "--executor", "ray"]) == 0
    finally:
        ray.shutdown()
    lines = lambda db: sqlite3.connect(db).execute("SELECT cell, epoch, line FROM epochs ORDER BY cell, epoch").fetchall()  # noqa: E731
    strip = lambda rows: [(c, e, {k: v for k, v in json.loads(l).items() if "seconds" not in k and k != "images_per_second"})  # noqa: E731
                          for c, e, l in rows]
    assert results(tmp_path / "ray.db") == results(tmp_path / "local.db")
    assert strip(lines(tmp_path / "ray.db")) == strip(lines(tmp_path / "local.db")) and len(lines(tmp_path / "ray.db")) == 8


def test_poison_jobs_get_a_resolved_device(monkeypatch, tmp_path):
    """The spec's device 'auto' reaches the attacks as cpu or cuda (they take torch devices)."""
    import pst_fast.attacks
    from pst_fast.sweep.run import _make_poison

    seen = {}
    monkeypatch.setattr(pst_fast.attacks, "poison", lambda *a, **kw: seen.update(kw))
    _make_poison("em", "cifar10-mini", {}, 0, str(tmp_path / "p"), "auto")
    assert seen["device"] in ("cpu", "cuda")


def test_local_workers_claim_one_gpu_each(monkeypatch):
    import multiprocessing

    import torch

    from pst_fast.sweep.run import _worker_init

    threads, slots, seen = torch.get_num_threads(), multiprocessing.get_context("spawn").Value("i", 0), []
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", str(threads)))  # restored afterwards
    try:
        for _ in range(3):
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
            _worker_init(1, slots, ("3", "5"), die_with_parent=False)
            seen.append(os.environ["CUDA_VISIBLE_DEVICES"])
    finally:
        torch.set_num_threads(threads)
    assert seen == ["3", "5", "3"]


@pytest.mark.parametrize("path", sorted(p.name for p in (Path(__file__).parents[1] / "benchmarks" / "specs").glob("*.toml")))
def test_every_shipped_spec_plans(path):
    """Each spec under benchmarks/specs parses, expands to distinct cells and opens with a comment saying what it is for."""
    spec_path = Path(__file__).parents[1] / "benchmarks" / "specs" / path
    cells = expand(load_spec(spec_path))
    assert cells and len({c.id for c in cells}) == len(cells)
    assert spec_path.read_text().startswith("#"), f"{path}: starts with no comment saying what it is for"
