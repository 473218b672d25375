"""A restricted unpickler for the CIFAR python batches: builtin containers, bytes and numpy arrays only.

Every global a pickle names goes through ``find_class``; only the constructors that numpy arrays, numpy
scalars, dicts, lists and bytes need are admitted (looked up in a fixed table, nothing is imported), and
``_codecs.encode`` only with latin-1. Anything else (``os.system``, ``builtins.eval``, any class) is
refused with a one-line :class:`DataError` before it can be called, so an untrusted file cannot run code.

Nor can it take unbounded memory: the admitted constructors are wrapped so that ``bytes(n)`` / ``bytearray(n)`` (which
allocate n bytes from a few bytes of pickle) are refused, everything they build together holds at most
:data:`.limits.MAX_PICKLE_ITEMS` elements (``list(bytes(...))`` chains would otherwise multiply), numpy arrays are
rebuilt only the way numpy pickles them (``_reconstruct(ndarray, (0,), ...)`` then their own bytes), and
``numpy.ndarray`` is given to ``_reconstruct`` but cannot be called to allocate an array of any shape.
"""
from __future__ import annotations

import builtins
import io
import pickle

import numpy as np

from ..errors import DataError
from .limits import MAX_PICKLE_ITEMS

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray, numeric as _numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray, numeric as _numeric

_BUILTINS = ("list", "dict", "tuple", "set", "frozenset", "bytes", "bytearray", "str", "int", "float", "complex", "bool")
ALLOWED = {
    **{(m, n): getattr(builtins, n) for m in ("builtins", "__builtin__") for n in _BUILTINS},
    **{(f"numpy.{c}.multiarray", n): getattr(_multiarray, n) for c in ("core", "_core") for n in ("_reconstruct", "scalar")},
    **{(f"numpy.{c}.numeric", "_frombuffer"): _numeric._frombuffer for c in ("core", "_core")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


_NDARRAY = object()  # what a pickle's reference to numpy.ndarray resolves to: an argument of _reconstruct, not callable


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves globals only from :data:`ALLOWED`; ``where`` names the file in errors."""

    def __init__(self, file, where: str, encoding: str = "bytes"):
        super().__init__(file, encoding=encoding)
        self.where = where
        self.items = 0  # elements built by calls so far

    def find_class(self, module: str, name: str):
        if (module, name) == ("_codecs", "encode"):
            return self._counted(self._latin1_encode)
        if (module, name) not in ALLOWED:
            raise DataError(
                f"{self.where}: pickle refers to {module}.{name}, which is not allowed (only builtin containers, bytes and numpy arrays)"
            )
        target = ALLOWED[module, name]
        if target is np.ndarray:
            return _NDARRAY
        if name == "_reconstruct":
            return self._reconstruct
        return self._counted(target)

    def _counted(self, fn):
        """``fn`` admitted with a budget: no integer size for bytes/bytearray, at most MAX_PICKLE_ITEMS elements in all."""
        def call(*args, **kwargs):
            if fn in (bytes, bytearray) and args and isinstance(args[0], int):
                raise DataError(f"{self.where}: pickle calls {fn.__name__}({args[0]}), which allocates from a number; refused")
            self._count(sum(len(a) for a in args if hasattr(a, "__len__")))  # what the call will at least copy
            out = fn(*args, **kwargs)
            self._count(len(out) if hasattr(out, "__len__") else 1)
            return out

        return call

    def _count(self, n: int) -> None:
        self.items += n
        if self.items > MAX_PICKLE_ITEMS:
            raise DataError(f"{self.where}: pickle builds more than {MAX_PICKLE_ITEMS} elements by calls (a memory bomb?); refused")

    def _reconstruct(self, subtype, shape, dtype):
        """numpy's ``_reconstruct`` as ``ndarray.__reduce__`` calls it: an empty array whose state (and bytes) come next."""
        if subtype is not _NDARRAY or tuple(shape) != (0,):
            raise DataError(f"{self.where}: pickle rebuilds a numpy array as numpy never writes one (_reconstruct({shape!r})); refused")
        return _multiarray._reconstruct(np.ndarray, (0,), dtype)

    def _latin1_encode(self, text: str, encoding: str = "utf-8") -> bytes:
        """``_codecs.encode`` as protocol-2 pickles of bytes call it: ``encode(str, 'latin1')``."""
        if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
            raise DataError(f"{self.where}: pickle calls _codecs.encode with {encoding!r}; only latin1 is allowed")
        return text.encode("latin1")


def safe_load(data, where: str | None = None, encoding: str = "bytes"):
    """Unpickle ``data`` (bytes or a binary file object) admitting only builtin containers, bytes and numpy arrays.

    ``encoding`` decodes Python 2 ``str`` objects: ``'bytes'`` (the default, keeps CIFAR's ``b'data'`` keys as
    bytes) or ``'latin1'``. ``where`` names the file in errors (default: the file object's name).
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        file = io.BytesIO(data)
    else:
        file = data
    where = where or str(getattr(file, "name", "<pickle>"))
    try:
        return RestrictedUnpickler(file, where, encoding).load()
    except DataError:
        raise
    except Exception as e:  # corrupt pickles raise many types (UnpicklingError, EOFError, ValueError, ...)
        raise DataError(f"{where}: not a readable pickle ({type(e).__name__}: {brief(e)})") from None


def brief(e: BaseException, limit: int = 100) -> str:
    """An exception's message on one line, at most ``limit`` characters."""
    s = " ".join(str(e).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."
