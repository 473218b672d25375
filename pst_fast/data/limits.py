"""What an untrusted input may make pst_fast allocate, checked before anything is decoded or allocated.

A small file must not turn into gigabytes: an image header may claim 65500x65500 pixels, a tar.gz or a zip member
may inflate a thousandfold, an ``.npy`` header may declare any shape, a pickle may call ``bytes(10**12)``. Every
importer bounds each of these from what it can see before allocating:

- one image: at most :data:`MAX_IMAGE_PIXELS` pixels (Pillow's default limit; ``PST_FAST_MAX_IMAGE_PIXELS``
  changes it), checked from its header;
- what a source expands to (the bytes read out of an archive, the decoded images of a folder, the arrays of an
  ``.npz``): at most ``max(FLOOR_BYTES, MAX_EXPANSION x`` the size of the source on disk``)`` (:func:`expansion`);
  real datasets stay far below (JPEG and PNG images decode to 1-30x their size, tar.gz archives of them inflate
  1-10x), a decompression bomb far above;
- a restricted unpickle: at most :data:`MAX_PICKLE_ITEMS` elements built by calls (:mod:`.safe_pickle`).
"""
from __future__ import annotations

import os
import stat

from ..errors import DataError

MAX_IMAGE_PIXELS = int(os.environ.get("PST_FAST_MAX_IMAGE_PIXELS", 89_478_485))  # Pillow's Image.MAX_IMAGE_PIXELS
MAX_EXPANSION = 100
FLOOR_BYTES = 128 << 20
MAX_PICKLE_ITEMS = 1 << 24


def check_pixels(h: int, w: int, where: str) -> None:
    """Refuse an image whose header claims more than :data:`MAX_IMAGE_PIXELS` pixels, before it is decoded."""
    if h * w > MAX_IMAGE_PIXELS:
        raise DataError(f"{where}: image of {w}x{h} = {h * w} pixels exceeds the limit of {MAX_IMAGE_PIXELS} "
                        "(a decompression bomb? PST_FAST_MAX_IMAGE_PIXELS raises the limit)")


def expansion(source_bytes: int) -> int:
    """The most bytes a source of ``source_bytes`` on disk may expand to."""
    return max(FLOOR_BYTES, MAX_EXPANSION * source_bytes)


def check_expansion(claimed: int, source_bytes: int, what: str, where: str) -> None:
    """Refuse ``claimed`` bytes (of ``what``) from a source of ``source_bytes`` beyond :func:`expansion`."""
    if claimed > expansion(source_bytes):
        raise DataError(f"{where}: {what} would take {claimed / 2**20:.1f} MiB from {source_bytes / 2**20:.2f} MiB on disk, more "
                        f"than {MAX_EXPANSION}x (a decompression bomb? refused before allocating)")


def read_regular(path: str | os.PathLike, limit: int, where: str | None = None) -> bytes:
    """The bytes of the regular file ``path`` (links followed) of at most ``limit`` bytes. A FIFO, socket or device is
    refused without blocking on it (opened non-blocking, checked with fstat before any read)."""
    where = where or str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise DataError(f"{where}: cannot open ({e.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DataError(f"{where}: not a regular file (a FIFO, socket or device); only regular files are read")
        if st.st_size > limit:
            raise DataError(f"{where}: {st.st_size} bytes, more than the {limit} allowed here")
        data = f.read(st.st_size)  # a regular file's size from fstat: read() preallocates what it is asked for
        if len(data) != st.st_size:
            raise DataError(f"{where}: changed while it was read ({len(data)} of {st.st_size} bytes)")
        return data


def is_regular(path: str | os.PathLike) -> bool:
    """Whether ``path`` (links followed) is a regular file; False for a FIFO, socket, device, directory or dangling link."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False
