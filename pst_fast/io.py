"""Writing files and directories: atomic writes (temp file in the same directory + os.replace), so a killed job never
leaves half a file; temporary sibling directories that are renamed into place; every file and directory created with
the user's umask (``tempfile`` creates 0600 files and 0700 directories); and ``--out`` checked before any work."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable

from .errors import PstFastError


def umask() -> int:
    """The process's umask (from /proc on Linux, where reading it does not change it for other threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def temp_dir(parent: str | os.PathLike, name: str) -> Path:
    """A new empty directory ``parent/.name.tmp-XXXX`` (parents created) with the permissions of an ordinary mkdir."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent))
    os.chmod(tmp, 0o777 & ~umask())
    return tmp


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temp file onto ``path`` (created with the umask's permissions)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~umask())
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


def atomic_torch_save(obj, path: str | os.PathLike) -> Path:
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def check_out(path: str | os.PathLike, flag: str = "--out", new: bool = True, file: bool = False) -> Path:
    """``path`` checked before any work is done, without writing anything: ``new`` = it must not exist yet (else an
    existing directory is fine); ``file`` = it names a file (else a directory); it lies below directories only, and
    the nearest existing one accepts new entries (tried by creating and removing a temporary directory there, which
    also holds for root, read-only mounts and /proc). Raises a one-line :class:`PstFastError`."""
    p = Path(path).expanduser()
    if p.exists() or p.is_symlink():
        if new:
            raise PstFastError(f"{flag} {p}: exists (choose another {flag} or remove it)")
        if file and p.is_dir():
            raise PstFastError(f"{flag} {p}: is a directory; expected a file name")
        if not file and not p.is_dir():
            raise PstFastError(f"{flag} {p}: is a file; expected a directory")
    ancestor = p.parent if not p.exists() else (p if p.is_dir() else p.parent)
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise PstFastError(f"{flag} {p}: lies below {ancestor}, which is a file, not a directory")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".pst-fast-probe-", dir=ancestor))
    except OSError as e:
        raise PstFastError(f"{flag} {p}: cannot create it: {ancestor} is not writable ({e.strerror})") from None
    return p
