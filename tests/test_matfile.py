"""The MAT v5 reader: files written here the way MATLAB writes them (compressed or not, either byte order, small data
elements, values stored in a narrower type than their class), scipy's writer when scipy is installed, and refusals."""
import struct
import zlib

import numpy as np
import pytest

from pst_fast.data.matfile import read_arrays

MI = {"i1": 1, "u1": 2, "i2": 3, "u2": 4, "i4": 5, "u4": 6, "f4": 7, "f8": 9, "i8": 12, "u8": 13}
MX = {"f8": 6, "f4": 7, "i1": 8, "u1": 9, "i2": 10, "u2": 11, "i4": 12, "u4": 13, "i8": 14, "u8": 15}


def element(kind: int, data: bytes, order: str) -> bytes:
    """One data element: the small format (tag word count << 16 | type) for up to 4 bytes of a numeric type, else tag + padded data."""
    if len(data) <= 4 and kind < 14:
        return struct.pack(order + "I", len(data) << 16 | kind) + data.ljust(4, b"\0")
    return struct.pack(order + "II", kind, len(data)) + data + b"\0" * (-len(data) % 8)


def matrix(name: str, a: np.ndarray, order: str, stored: str | None = None, cls: int | None = None, flags: int = 0) -> bytes:
    """An miMATRIX of ``a`` (class of its dtype unless ``cls``), values stored as ``stored`` (MATLAB's compact storage)."""
    stored = stored or a.dtype.str[1:]
    body = element(6, struct.pack(order + "II", (cls or MX[a.dtype.str[1:]]) | flags, 0), order)
    body += element(5, struct.pack(f"{order}{a.ndim}i", *a.shape), order)
    body += element(1, name.encode(), order)
    body += element(MI[stored], a.astype(np.dtype(stored).newbyteorder(order)).tobytes(order="F"), order)
    return element(14, body, order)


def write_mat(path, variables: dict, order: str = "<", compress: bool = True, stored: dict | None = None) -> None:
    """A MAT v5 file of ``variables`` {name: array}; ``stored`` {name: dtype} stores values narrower than their class."""
    head = b"MATLAB 5.0 MAT-file, written by pst_fast's tests".ljust(116) + b"\0" * 8
    head += struct.pack(order + "H", 0x0100) + struct.pack(order + "H", ord("M") << 8 | ord("I"))
    out = head
    for name, a in variables.items():
        m = matrix(name, np.asarray(a), order, (stored or {}).get(name))
        out += struct.pack(order + "II", 15, len(z := zlib.compress(m))) + z if compress else m
    path.write_bytes(out)


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("compress", [True, False])
def test_reads_what_matlab_writes(tmp_path, order, compress):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (32, 32, 3, 400), dtype=np.uint8)  # 1.2 MB: read in more than one chunk
    y = rng.integers(1, 11, (400, 1)).astype(np.float64)
    path = tmp_path / "a.mat"
    write_mat(path, {"other": np.eye(2), "X": x, "y": y, "s": np.array([[2.5]], np.float32), "n": np.arange(6, dtype=np.int16).reshape(2, 3)},
              order, compress, stored={"y": "u1"})  # a double label vector stored as bytes, as MATLAB saves it
    got = read_arrays(path, ["X", "y", "s", "n", "absent"])
    assert set(got) == {"X", "y", "s", "n"}
    assert got["X"].dtype == np.uint8 and np.array_equal(got["X"], x)
    assert got["y"].dtype == np.float64 and np.array_equal(got["y"], y)
    assert got["s"].dtype == np.float32 and got["s"].shape == (1, 1) and got["s"][0, 0] == 2.5  # 4 bytes: a small element
    assert np.array_equal(got["n"], np.arange(6, dtype=np.int16).reshape(2, 3))


def test_agrees_with_scipy(tmp_path):
    sio = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(1)
    arrays = {"X": rng.integers(0, 256, (8, 8, 3, 5), dtype=np.uint8), "y": rng.integers(1, 11, (5, 1)).astype(np.float64)}
    for compress in (False, True):
        sio.savemat(tmp_path / "s.mat", arrays | {"text": "skipped", "cell": np.array([1, "a"], dtype=object)}, do_compression=compress)
        got = read_arrays(tmp_path / "s.mat", ["X", "y"])
        assert all(np.array_equal(got[k], v) and got[k].dtype == v.dtype for k, v in arrays.items())


def test_refusals(tmp_path, fails):
    p = tmp_path / "bad.mat"
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 200)
    fails("v7.3", read_arrays, p, ["X"])
    p.write_bytes(b"MATLAB 7.3 MAT-file, Platform: x" + b"\0" * 200)
    fails("v7.3", read_arrays, p, ["X"])
    p.write_bytes(b"not a mat file at all" * 10)
    fails("not a MAT v5", read_arrays, p, ["X"])
    fails("cannot open", read_arrays, tmp_path / "missing.mat", ["X"])

    write_mat(p, {"X": np.zeros((4, 4), np.uint8)}, compress=False)
    full = p.read_bytes()
    p.write_bytes(full[:-12])
    fails("truncated", read_arrays, p, ["X"])
    write_mat(p, {"X": np.zeros((64, 64), np.uint8)}, compress=True)
    p.write_bytes(p.read_bytes()[:-20])
    fails("truncated|corrupt", read_arrays, p, ["X"])

    write_mat(p, {"X": np.zeros((2, 2))})
    raw = bytearray(p.read_bytes())
    body = zlib.decompress(bytes(raw[136:]))
    complex_flag = bytearray(body)
    complex_flag[16:20] = struct.pack("<I", 6 | 0x800)
    p.write_bytes(bytes(raw[:128]) + struct.pack("<II", 15, len(z := zlib.compress(bytes(complex_flag)))) + z)
    fails("not a real numeric array", read_arrays, p, ["X"])

    # a compressed element that claims to inflate past deflate's maximum ratio is refused before anything is allocated
    huge = struct.pack("<II", 14, 2_000_000_000)
    p.write_bytes(bytes(raw[:128]) + struct.pack("<II", 15, len(z := zlib.compress(huge))) + z)
    fails("at most 1032x", read_arrays, p, ["X"])

    # declared value bytes that disagree with the dimensions
    m = bytearray(matrix("X", np.zeros((3, 3), np.uint8), "<"))
    m[-20:-16] = struct.pack("<I", 2)
    p.write_bytes(bytes(raw[:128]) + bytes(m))
    fails("declares", read_arrays, p, ["X"])
