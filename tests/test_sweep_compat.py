"""Records made by an earlier version keep their names: tests/data/sweep-v0.1 holds a spec and the results database
pst_fast 0.1.0 wrote for it before issue 20 (the trainer inversion). Today's code must find every cell and poison of it
by id, and a re-run must train nothing."""
from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from pst_fast.cli import main
from pst_fast.sweep import expand, load_spec

FIXTURE = Path(__file__).parent / "data" / "sweep-v0.1"


def test_cell_and_poison_ids_of_a_database_written_before_issue_20_are_unchanged():
    con = sqlite3.connect(FIXTURE / "results.db")
    cells = dict(con.execute("SELECT id, status FROM cells").fetchall())
    poisons = dict(con.execute("SELECT id, status FROM artifacts WHERE kind = 'poison'").fetchall())
    planned = expand(load_spec(FIXTURE / "spec.toml"))
    assert len(cells) == 16 and set(cells.values()) == {"done"} and len(poisons) == 3
    assert {c.id for c in planned} == set(cells)
    assert {c.poison.id for c in planned if c.poison} == set(poisons)


def test_a_rerun_of_the_earlier_sweep_finds_every_cell_finished_and_trains_nothing(tmp_path, capsys):
    db = tmp_path / "results.db"
    shutil.copy(FIXTURE / "results.db", db)
    main(["sweep", "run", str(FIXTURE / "spec.toml"), "--db", str(db), "--workdir", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert "16/16 cells done" in out
    assert not (tmp_path / "runs").exists() or not any(p.is_file() for p in (tmp_path / "runs").rglob("*"))
