"""Records made by an earlier version keep their names: tests/data/sweep-v0.1 holds a spec and the results database
pst_fast 0.1.0 wrote for it before issue 20 (the trainer inversion). Today's code must find every cell and poison of it
by id, and a re-run must train nothing. The one renaming since is declared: PST's ``hold_until`` became 0.75 after
0.1.0 (records made before ran to the end), so its cells carry that parameter in their names (``options.opt``'s
``later``/``earlier``) and differ from the 0.1.0 records by exactly that."""
from __future__ import annotations

import copy
import shutil
import sqlite3
from pathlib import Path

from pst_fast.cli import main
from pst_fast.sweep import expand, load_spec
from pst_fast.sweep.plan import content_id

FIXTURE = Path(__file__).parent / "data" / "sweep-v0.1"


def test_cell_and_poison_ids_of_a_database_written_before_issue_20_are_unchanged():
    con = sqlite3.connect(FIXTURE / "results.db")
    cells = dict(con.execute("SELECT id, status FROM cells").fetchall())
    poisons = dict(con.execute("SELECT id, status FROM artifacts WHERE kind = 'poison'").fetchall())
    planned = expand(load_spec(FIXTURE / "spec.toml"))
    assert len(cells) == 16 and set(cells.values()) == {"done"} and len(poisons) == 3
    assert {c.poison.id for c in planned if c.poison} == set(poisons)
    assert {c.id for c in planned if c.defense != "pst"} == {i for i in cells} - {i for i in cells if i in PST_CELLS}
    renamed = {c.id: copy.deepcopy(dict(c.train)) for c in planned if c.defense == "pst"}
    assert not set(renamed) & set(cells)
    for train in renamed.values():  # exactly the added parameter at its new default, beside those named before
        assert train["defense_params"].pop("hold_until") == 0.75
    assert {content_id({"kind": "cell", "data": c.poison.id if c.poison else c.dataset, "train": renamed[c.id]})
            for c in planned if c.defense == "pst"} == PST_CELLS


PST_CELLS = {"145213a6c748d236", "c84890e92ab80bce", "0d20228076299abb", "d01ec3082c01a9a8"}  # the 0.1.0 names of its PST cells


def test_a_rerun_of_the_earlier_sweep_finds_every_cell_finished_and_trains_nothing(tmp_path, capsys):
    db = tmp_path / "results.db"
    shutil.copy(FIXTURE / "results.db", db)
    spec = tmp_path / "spec.toml"  # less PST, renamed since (above)
    spec.write_text((FIXTURE / "spec.toml").read_text().replace("[defenses.pst]\ncheck_every = 5\nprobe_size = 100\n", ""))
    assert spec.read_text().count("[defenses.") == 3
    main(["sweep", "run", str(spec), "--db", str(db), "--workdir", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert "16/16 cells done" in out
    assert not (tmp_path / "runs").exists() or not any(p.is_file() for p in (tmp_path / "runs").rglob("*"))
