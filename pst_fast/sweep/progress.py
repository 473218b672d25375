"""What each running job of a sweep is doing, shown under the sweep's job bar.

A job (a poison or a cell) runs in a worker process (local pool or Ray) with its progress bars on and its
``sys.stderr``/``sys.stdout`` replaced by :class:`ProgressSink`s (:func:`reporting`): the status line of the bar
drawn last (EM: ``em: 60%|… 3/5 [… acc=0.812]``, its rounds and surrogate accuracy; training: ``epoch 2/8: …
loss, acc``; SAL rounds) and every ``tqdm.write`` line (training: one per epoch with the test accuracy) go to the
job's small progress file (``WORKDIR/progress/JOB.json``, rewritten atomically at most every ``INTERVAL``
seconds); any other text goes on to the real stream. The sweep process polls those files (:class:`JobLines`): on
a terminal, one line under the job bar per job a worker has started (tqdm positions); otherwise plain lines (each
new epoch line, and a job's status at most every ``PLAIN_EVERY`` seconds).
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import sys
import time
from pathlib import Path

from ..io import atomic_write_json

INTERVAL = 1.0       # seconds between rewrites of a job's progress file
PLAIN_EVERY = 60.0   # without a terminal: seconds between two status lines of one job
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class JobProgress:
    """A job's progress file: ``{"status": the current bar, "lines": the lines written so far}``."""

    def __init__(self, path: str | Path):
        self.path, self.status, self.lines, self.written = Path(path), "", [], 0.0

    def set_status(self, text: str) -> None:
        self.status = text
        if time.monotonic() - self.written >= INTERVAL:
            self.save()

    def add_line(self, text: str) -> None:
        self.lines.append(text)
        self.save()

    def save(self) -> None:
        self.written = time.monotonic()
        atomic_write_json(self.path, {"status": self.status, "lines": self.lines})


class ProgressSink(io.TextIOBase):
    """A text stream for a job's stderr (``bars=True``) or stdout (``bars=False``). On stderr, a write holding a carriage
    return is tqdm drawing a bar (one call per refresh): its last non-blank segment becomes the job's status (blank:
    the bar was erased); other text goes on to ``forward`` line by line (blank lines dropped). On stdout every line
    becomes one of the job's lines."""

    def __init__(self, job: JobProgress, forward, bars: bool):
        self.job, self.forward, self.bars, self.buf = job, forward, bars, ""

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, s: str) -> int:
        text = ANSI.sub("", s)
        if self.bars and "\r" in text:
            self.job.set_status(next((p.strip() for p in reversed(text.split("\r")) if p.strip()), ""))
            return len(s)
        self.buf += text
        *lines, self.buf = self.buf.split("\n")
        for line in filter(str.strip, lines):
            if self.bars:
                self.forward.write(line + "\n")
            else:
                self.job.add_line(line.strip())
        return len(s)

    def flush(self) -> None:
        self.forward.flush()


@contextlib.contextmanager
def reporting(path: str | None):
    """Within the block, a worker job's bars and printed lines go to its progress file at ``path`` (None: nothing changes).
    Yields whether it reports (the job then turns its progress bars on)."""
    if path is None:
        yield False
        return
    job = JobProgress(path)
    job.set_status("started")  # the sweep shows a job from the moment a worker takes it
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = ProgressSink(job, out, bars=False), ProgressSink(job, err, bars=True)
    try:
        yield True
    finally:
        sys.stdout, sys.stderr = out, err
        job.save()


class JobLines:
    """The sweep process's side: one line per running job under the job bar (``live``: a terminal), else plain lines
    through ``say``. ``start`` returns the progress file a job writes (None when not ``enabled``); ``poll`` reads them
    all; ``finish`` drops one."""

    def __init__(self, root: Path, live: bool, say, enabled: bool = True):
        self.dir, self.live, self.say, self.enabled = root / "progress", live, say, enabled
        self.jobs: dict[str, dict] = {}

    def start(self, key: str, name: str) -> str | None:
        if not self.enabled:
            return None
        path = self.dir / f"{key}.json"
        path.unlink(missing_ok=True)  # left by a killed sweep
        self.jobs[key] = {"name": name, "path": path, "printed": 0, "status": "", "said": time.monotonic(), "bar": None}
        return str(path)

    def poll(self) -> None:
        for job in self.jobs.values():
            self._show(job)

    def _show(self, job: dict) -> None:
        try:
            doc = json.loads(job["path"].read_text())
        except (OSError, ValueError):  # waiting for a worker
            return
        lines, status = doc.get("lines", []), doc.get("status", "")
        if self.live:
            from tqdm.auto import tqdm

            text = f"  {job['name']}: {status or (lines[-1] if lines else '')}"[: shutil.get_terminal_size().columns - 1]
            if job["bar"] is None:
                job["bar"] = tqdm(total=0, bar_format="{desc}", leave=False, desc=text)
            job["bar"].set_description_str(text)
            return
        for line in lines[job["printed"]:]:
            self.say(f"  {job['name']}: {line}")
        job["printed"] = len(lines)
        if status and status != job["status"] and time.monotonic() - job["said"] >= PLAIN_EVERY:
            self.say(f"  {job['name']}: {status}")
            job["status"], job["said"] = status, time.monotonic()

    def finish(self, key: str) -> None:
        if key not in self.jobs:
            return
        job = self.jobs.pop(key)
        if job["bar"] is not None:
            job["bar"].close()
        else:
            self._show(job)  # the lines written since the last poll
        job["path"].unlink(missing_ok=True)
