"""The lock of a sweep database: one ``sweep run`` at a time per database, so no cell is trained twice at once.

``DB.lock`` (next to the database) is held with ``flock`` for the whole run and records who holds it (host, pid,
start time). The kernel drops the lock when its process dies, however it dies, so the file of a killed run is
stale and the next run simply takes it over; a live holder makes a second runner fail with a one-line error
naming it, or wait for it (``--wait``).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from ..errors import PstFastError


def _holder(f) -> str:
    """Who holds the lock, in words, from the lock file's record."""
    f.seek(0)
    try:
        h = json.loads(f.read() or "{}")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(h["started"])))
        return f"host {h['host']}, pid {h['pid']}, started {since}"
    except (ValueError, KeyError, TypeError):
        return "a process that has not recorded itself yet"


@contextlib.contextmanager
def db_lock(db: str | os.PathLike, wait: bool = False, say=print):
    """Hold the lock of the sweep database ``db`` for the ``with`` block. Held by a live process: raise a one-line
    :class:`PstFastError` naming it, or with ``wait`` say so (``say``) and block until it is released."""
    path = Path(f"{db}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    with os.fdopen(fd, "r+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(f)
            if not wait:
                raise PstFastError(f"--db {db}: another 'sweep run' is using it ({holder}); let it finish, or pass --wait "
                                   "to start after it") from None
            say(f"--db {db}: waiting for the 'sweep run' using it ({holder})")
            fcntl.flock(f, fcntl.LOCK_EX)
        except OSError as e:
            raise PstFastError(f"--db {db}: cannot lock {path} ({e.strerror}); the file system must support flock") from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}))
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            f.flush()
            fcntl.flock(f, fcntl.LOCK_UN)
