"""The results database of a sweep (SQLite): cells, artifacts, per-epoch metrics, final metrics, status,
timings, host, package version and error text. A cell's status is pending (not yet handed to a
worker), queued (handed to one; its run directory holds the epochs so far), done or failed. Every write is one transaction, so a killed sweep leaves
either the old row or the new one; a cell is marked done only after its run directory is complete.

    artifacts(id, kind, config, path, status, seconds, host, updated)
    cells(id, dataset, attack, defense, model, seed, reference, config, run_dir, status, error,
          final_test_acc, peak_test_acc, ud, lp, seconds, host, version, updated)
    epochs(cell, epoch, line)            one metrics.jsonl line per finished epoch
"""
from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import time
from pathlib import Path

from ..errors import PstFastError

SCHEMA = """
CREATE TABLE IF NOT EXISTS artifacts (id TEXT PRIMARY KEY, kind TEXT, config TEXT, path TEXT, status TEXT,
    seconds REAL, host TEXT, updated REAL);
CREATE TABLE IF NOT EXISTS cells (id TEXT PRIMARY KEY, dataset TEXT, attack TEXT, defense TEXT, model TEXT, seed INTEGER,
    reference INTEGER, config TEXT, run_dir TEXT, status TEXT, error TEXT, final_test_acc REAL, peak_test_acc REAL,
    ud REAL, lp REAL, seconds REAL, host TEXT, version TEXT, updated REAL);
CREATE TABLE IF NOT EXISTS epochs (cell TEXT, epoch INTEGER, line TEXT, PRIMARY KEY (cell, epoch));
"""


class Store:
    """A sweep's SQLite database at ``path`` (created on first use)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise PstFastError(f"--db {self.path}: not a usable SQLite results database ({e})") from None
        self.db.row_factory = sqlite3.Row

    @contextlib.contextmanager
    def _transaction(self):
        """One write transaction (taken at once, so concurrent writers queue instead of failing later)."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            yield self.db

    def _tx(self, sql: str, args=()) -> None:
        with self._transaction() as db:
            db.execute(sql, args)

    def add_cells(self, cells) -> None:
        """Insert cells that are not in the database yet (pending); existing rows keep their status."""
        with self._transaction():
            for c in cells:
                self.db.execute("INSERT OR IGNORE INTO cells (id, dataset, attack, defense, model, seed, reference, config, status, updated) "
                                "VALUES (?,?,?,?,?,?,?,?,?,?)", (c.id, c.dataset, c.attack, c.defense, c.model, c.seed, int(c.reference),
                                                                json.dumps(c.config(), sort_keys=True), "pending", time.time()))

    def status(self, cell_id: str) -> str | None:
        row = self.db.execute("SELECT status FROM cells WHERE id=?", (cell_id,)).fetchone()
        return row["status"] if row else None

    def cell_queued(self, cell_id: str, run_dir: str) -> None:
        """Handed to a worker; its run directory shows how far it got (a report reads the epochs there)."""
        from .. import __version__

        self._tx("UPDATE cells SET status='queued', run_dir=?, host=?, version=?, error=NULL, updated=? WHERE id=?",
                 (run_dir, socket.gethostname(), __version__, time.time(), cell_id))

    def cell_done(self, cell_id: str, summary: dict, lines: list[dict]) -> None:
        with self._transaction():
            self.db.execute("DELETE FROM epochs WHERE cell=?", (cell_id,))
            self.db.executemany("INSERT INTO epochs VALUES (?,?,?)", [(cell_id, l["epoch"], json.dumps(l)) for l in lines])
            self.db.execute("UPDATE cells SET status='done', final_test_acc=?, peak_test_acc=?, seconds=?, updated=? WHERE id=?",
                            (summary["final_test_acc"], summary["peak_test_acc"], summary["wall_seconds"], time.time(), cell_id))

    def cell_failed(self, cell_id: str, error: str) -> None:
        self._tx("UPDATE cells SET status='failed', error=?, updated=? WHERE id=?", (error, time.time(), cell_id))

    def note_error(self, cell_id: str, error: str) -> None:
        """Record an error of a step after training (e.g. UD) without changing the cell's status."""
        self._tx("UPDATE cells SET error=?, updated=? WHERE id=?", (error, time.time(), cell_id))

    def set_ud(self, cell_id: str, ud: float, lp: float) -> None:
        self._tx("UPDATE cells SET ud=?, lp=? WHERE id=?", (ud, lp, cell_id))

    def artifact(self, art_id: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM artifacts WHERE id=?", (art_id,)).fetchone()

    def artifact_done(self, art_id: str, kind: str, config: dict, path: str, seconds: float) -> None:
        self._tx("INSERT OR REPLACE INTO artifacts VALUES (?,?,?,?,?,?,?,?)",
                 (art_id, kind, json.dumps(config, sort_keys=True), path, "done", seconds, socket.gethostname(), time.time()))

    def cells(self) -> list[sqlite3.Row]:
        return self.db.execute("SELECT * FROM cells ORDER BY rowid").fetchall()

    def epochs(self, cell_id: str) -> list[dict]:
        return [json.loads(r["line"]) for r in self.db.execute("SELECT line FROM epochs WHERE cell=? ORDER BY epoch", (cell_id,))]
