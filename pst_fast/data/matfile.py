"""A bounded reader of the MATLAB 5 MAT-file subset that datasets ship in (SVHN's ``train_32x32.mat``): real, dense
numeric arrays, stored plain or zlib-compressed (``miCOMPRESSED``, what ``save -v7`` writes).

``read_arrays(path, names)`` returns ``{name: ndarray}`` in MATLAB's (column-major) shape, in the class's dtype (MATLAB
stores values compactly, e.g. a double label vector as uint8 bytes; they are widened back). Other variables are
skipped without decoding them. Cells, structs, objects, chars, sparse and complex arrays among the wanted names,
v4 and v7.3 (HDF5) files, and every inconsistency are refused with one line naming the file. Memory is bounded by
the arrays themselves: sizes are checked against the file before anything is allocated (a compressed element cannot
inflate past zlib's maximum ratio), and compressed data is inflated chunk by chunk straight into the result.

Format: "MAT-File Format", The MathWorks (version 5 and 7 MAT-files: a 128-byte header, then tagged data elements).
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError

HEADER = 128
MI_MATRIX, MI_COMPRESSED = 14, 15
MI_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}  # miINT8 ... miUINT64
MX_CLASSES = {6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2", 12: "i4", 13: "u4", 14: "i8", 15: "u8"}  # mxDOUBLE ...
MX_COMPLEX = 0x800
ZLIB_MAX_RATIO = 1032  # deflate cannot expand data more than this (RFC 1951: at most 258 bytes per 2 bits)
CHUNK = 1 << 20


class _Stream:
    """Bytes of one top-level element: the file itself, or an inflating view of a compressed element's data."""

    def __init__(self, f, end: int, where: str, inflate: bool):
        self.f, self.end, self.where = f, end, where
        self.z = zlib.decompressobj() if inflate else None
        self.pending = b""

    def read(self, n: int) -> bytes:
        out = bytearray()
        self.readinto(out, n)
        return bytes(out)

    def readinto(self, out, n: int) -> None:
        """Append ``n`` bytes to ``out`` (a bytearray) or write them into ``out`` (a writable memoryview of n bytes)."""
        done = 0
        view = out if isinstance(out, memoryview) else None
        while done < n:
            if self.z is None:
                room = min(n - done, self.end - self.f.tell(), CHUNK)
                piece = self.f.read(room) if room > 0 else b""
            else:
                if not self.pending:
                    raw = self.f.read(min(CHUNK, self.end - self.f.tell())) if self.f.tell() < self.end else b""
                    try:
                        self.pending = self.z.decompress(self.z.unconsumed_tail + raw, CHUNK) if (raw or self.z.unconsumed_tail) else b""
                    except zlib.error as e:
                        raise DataError(f"{self.where}: corrupt compressed data ({e})") from None
                piece, self.pending = self.pending[: n - done], self.pending[n - done :]
            if not piece:
                raise DataError(f"{self.where}: truncated (a data element ends before its declared size)")
            if view is None:
                out += piece
            else:
                view[done : done + len(piece)] = piece
            done += len(piece)


def _tag(s: _Stream, order: str) -> tuple[int, int, bytes | None]:
    """(type, byte count, inline data or None) of the next element tag; small elements carry their data in the tag."""
    head = s.read(8)
    word, count = struct.unpack(order + "II", head)
    if word >> 16:  # small data element: one 32-bit word of (count << 16 | type), then up to 4 bytes of data
        small_type, small_count = word & 0xFFFF, word >> 16
        if small_count > 4:
            raise DataError(f"{s.where}: a small data element declares {small_count} bytes (at most 4)")
        return small_type, small_count, head[4 : 4 + small_count]
    return word, count, None


def _element(s: _Stream, order: str, limit: int) -> tuple[int, bytes]:
    """(type, data) of a small sub-element (flags, dimensions, name), padding consumed; at most ``limit`` bytes."""
    kind, count, inline = _tag(s, order)
    if inline is not None:
        return kind, inline
    if count > limit:
        raise DataError(f"{s.where}: an array header element declares {count} bytes (at most {limit} expected)")
    data = s.read(count)
    s.read(-count % 8)
    return kind, data


def _matrix(s: _Stream, order: str, size: int, wanted, path: Path) -> tuple[str, np.ndarray | None]:
    """(name, array or None when not wanted) of the miMATRIX whose ``size`` bytes follow in ``s``."""
    kind, flags = _element(s, order, 8)
    if kind != 6 or len(flags) != 8:
        raise DataError(f"{path}: an array lacks its flags element (a MAT v5 miMATRIX starts with miUINT32 flags)")
    word = struct.unpack(order + "I", flags[:4])[0]
    cls, dims_kind, dims_raw = word & 0xFF, *_element(s, order, 8 * 32)
    if dims_kind != 5 or not dims_raw or len(dims_raw) % 4:
        raise DataError(f"{path}: an array lacks its miINT32 dimensions element")
    dims = struct.unpack(f"{order}{len(dims_raw) // 4}i", dims_raw)
    name_kind, name_raw = _element(s, order, 64)
    name = name_raw.decode("ascii", "replace") if name_kind in (1, 2) else ""
    if name not in wanted:
        return name, None
    if cls not in MX_CLASSES or word & MX_COMPLEX:
        raise DataError(f"{path}: variable {name!r} is not a real numeric array (MATLAB class {cls}); expected a dense numeric matrix")
    if min(dims) < 0:
        raise DataError(f"{path}: variable {name!r} has negative dimensions {dims}")
    n = int(np.prod(dims, dtype=np.int64))
    stored_kind, count, inline = _tag(s, order)
    if stored_kind not in MI_TYPES:
        raise DataError(f"{path}: variable {name!r} stores its values as MAT type {stored_kind}; expected a numeric type")
    stored = np.dtype(MI_TYPES[stored_kind]).newbyteorder(order)
    if count != n * stored.itemsize or count > size:
        raise DataError(f"{path}: variable {name!r} declares {count} bytes of values for dimensions {'x'.join(map(str, dims))} "
                        f"({n * stored.itemsize} expected, within an element of {size})")
    if inline is not None:
        values = np.frombuffer(inline, stored, n)
    else:
        values = np.empty(n, stored)
        s.readinto(memoryview(values.view(np.uint8)), count)
    target = np.dtype(MX_CLASSES[cls])
    out = values.astype(target, copy=False)
    if not np.can_cast(stored, target, "safe") and not np.array_equal(out, values):
        raise DataError(f"{path}: variable {name!r} of class {target} stores values as {stored} that the class cannot hold")
    return name, out.reshape(dims, order="F")


def read_arrays(path: str | os.PathLike, names) -> dict[str, np.ndarray]:
    """The numeric variables ``names`` of the MAT v5/v7 file ``path`` (those present), as arrays of their MATLAB shape."""
    path = Path(path)
    wanted, found = set(names), {}
    try:
        f = open(path, "rb")
    except OSError as e:
        raise DataError(f"{path}: cannot open ({e.strerror})") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(HEADER)
        if head[:8] == b"\x89HDF\r\n\x1a\n" or head[:19] == b"MATLAB 7.3 MAT-file":
            raise DataError(f"{path}: a MAT v7.3 (HDF5) file; expected MAT v5/v7 (MATLAB: save(..., '-v7'))")
        if len(head) < HEADER or head[126:128] not in (b"IM", b"MI") or head[124:126] not in (b"\x00\x01", b"\x01\x00"):
            raise DataError(f"{path}: not a MAT v5/v7 file (no 128-byte header with version 0x0100 and an endian indicator)")
        order = "<" if head[126:128] == b"IM" else ">"
        while f.tell() + 8 <= size and wanted - set(found):
            start = f.tell()
            kind, count = struct.unpack(order + "II", f.read(8))
            end = start + 8 + count
            if end > size:
                raise DataError(f"{path}: truncated (an element at byte {start} declares {count} bytes, the file has {size - start - 8} left)")
            if kind == MI_COMPRESSED:
                s = _Stream(f, end, str(path), inflate=True)
                inner, inner_count, _ = _tag(s, order)
                if inner != MI_MATRIX or inner_count > ZLIB_MAX_RATIO * count:
                    raise DataError(f"{path}: a compressed element holds type {inner} of {inner_count} bytes from {count} "
                                    f"(expected an miMATRIX of at most {ZLIB_MAX_RATIO}x its compressed size)")
                name, array = _matrix(s, order, inner_count, wanted, path)
            elif kind == MI_MATRIX:
                name, array = _matrix(_Stream(f, end, str(path), inflate=False), order, count, wanted, path)
            else:
                name, array = "", None
            if array is not None:
                found[name] = array
            f.seek(end + (-count % 8 if kind != MI_COMPRESSED else 0))
    return found
