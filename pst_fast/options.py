"""Option fields: dataclass fields that carry their help text and their valid values, so the CLI is built from the
dataclass and every set of values becomes an instance through one function, :func:`coerce` (strings typed by
:func:`parse`, every value checked by :func:`check`), wherever it comes from: the command line, a sweep spec,
``key=value`` arguments or the Python API."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import field

from .errors import PstFastError

_DEFAULT = object()

def opt(default, help: str, choices=None, const=None, later: bool = False, earlier=_DEFAULT, *, ge=None, gt=None, le=None, lt=None):
    """A dataclass field with ``default``, a ``help`` line for ``--help``, optional ``choices``, and an optional
    ``const``: the value of the bare flag (``--sal`` alone means ``--sal fast``). ``later``: added after records (runs,
    sweep cells, poisons) were first named by their options — see :func:`identity`; ``earlier``: the behaviour those
    records had, when it is not the new default (a changed default: records made under it get new names).

    ``ge``, ``gt``, ``le``, ``lt`` bound a numeric option (>=, >, <=, <). Every float must be finite; a numeric option
    without declared bounds must be >= 0 when its default is (counts, sizes, rates), see :func:`bounds`."""
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    return field(default=default, metadata={"help": help, "choices": choices, "const": const, "later": later, "bounds": bounds,
                                            "earlier": default if earlier is _DEFAULT else earlier})


def identity(obj, leave_out=()) -> dict:
    """The fields of the dataclass ``obj`` that name what it computes: all but ``leave_out``, and a ``later`` field only
    when it differs from its ``earlier`` value (its default unless declared), so that records named before it existed
    keep their names and only they do."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)
            if f.name not in leave_out and not (f.metadata.get("later") and getattr(obj, f.name) == f.metadata["earlier"])}


def named_args(text: str, cls, flag: str) -> dict:
    """The ``later`` fields of ``cls`` parsed from ``text`` (``key=value,...``) that :func:`identity` keeps: what a record
    whose options hold ``text`` must add to its name when a default of ``cls`` changed."""
    p = parse_kv_args(text, cls, flag)
    later = {f.name for f in dataclasses.fields(cls) if f.metadata.get("later")}
    return {k: v for k, v in identity(p).items() if k in later}


def kind(f: dataclasses.Field) -> type:
    """The type of an option field's values, from its default: bool, int, float or str."""
    return type(f.default) if isinstance(f.default, (bool, int, float)) else str


def bounds(f: dataclasses.Field) -> dict:
    """The declared bounds of a numeric field, else ``{'ge': 0}`` when its default is >= 0, else none."""
    declared = f.metadata.get("bounds") or {}
    if declared or kind(f) not in (int, float):
        return declared
    return {"ge": 0} if f.default >= 0 else {}


def _a(typ: type) -> str:
    return "an integer" if typ is int else f"a {typ.__name__}"


_WORDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
_HOLDS = {"ge": lambda v, b: v >= b, "gt": lambda v, b: v > b, "le": lambda v, b: v <= b, "lt": lambda v, b: v < b}


def check(value, flag: str, typ: type, choices=None, **limits):
    """The one check of an option value: ``typ`` (an int passes for a float, unchanged, so that records named by their
    options keep their names; a bool is never a number), ``choices``, finiteness and the ``limits`` ge/gt/le/lt.
    Returns the value; raises a one-line :class:`PstFastError` naming ``flag`` and what was expected."""
    number = typ in (int, float)
    ok = isinstance(value, (int, float) if typ is float else typ) and not (number and isinstance(value, bool))
    if not ok:
        raise PstFastError(f"{flag}={value!r}: expected {_a(typ)}, got {type(value).__name__}")
    if choices and value not in choices:
        raise PstFastError(f"{flag}={value!r}: expected one of {', '.join(map(str, choices))}")
    if number:
        if not (math.isfinite(value) and all(_HOLDS[k](value, b) for k, b in limits.items())):
            what = "an integer" if typ is int else "a finite number"
            rng = " and ".join(f"{_WORDS[k]} {b:g}" for k, b in limits.items())
            raise PstFastError(f"{flag}={value!r}: expected {what}{' ' + rng if rng else ''}")
    return value


def flag_of(name: str) -> str:
    """The command-line flag of an option: ``label_smoothing`` -> ``--label-smoothing``."""
    return "--" + name.replace("_", "-")


_BOOLS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def parse(text: str, typ: type):
    """``text`` (from a command line, ``key=value`` arguments or a spec) as a ``typ`` value: for a bool one of the words
    true/false, yes/no, on/off, 1/0 (any case), else ``int(text)``, ``float(text)`` or ``text`` itself; a ValueError
    saying what was expected when it is none."""
    if typ is bool:
        if text.strip().lower() not in _BOOLS:
            raise ValueError("expected a bool: true/false, yes/no, on/off or 1/0")
        return _BOOLS[text.strip().lower()]
    try:
        return typ(text)
    except ValueError:
        raise ValueError(f"expected {_a(typ)}") from None


def coerce(cls, values: Mapping[str, object], where: str | Callable[[str], str], *, flags: bool = False):
    """``cls(**values)`` for the option dataclass ``cls``: unknown keys refused, strings parsed to their field's kind
    (:func:`parse`; a value of another type is kept, so an int passes for a float unchanged and records named by their
    options keep their names), every value checked (:func:`check`: type, choices, finite, bounds).

    Errors are one line, ``f"{where} {key}=...: expected ..."``: ``where`` names the source (``"--defense-args"``,
    ``"attack em: parameter"``), or is a function of the key (a spec's ``"file:line: [table]"``); ``flags``: keys are
    named as command-line flags (``--label-smoothing``)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    name = flag_of if flags else str

    def named(key: str) -> str:
        return f"{where(key) if callable(where) else where} {name(key)}".lstrip()

    typed = {}
    for key, value in values.items():
        if key not in fields:
            raise PstFastError(f"{named(key)}: unknown key; expected one of {', '.join(map(name, fields))}")
        f = fields[key]
        if isinstance(value, str) and kind(f) is not str:
            try:
                value = parse(value, kind(f))
            except ValueError as e:
                raise PstFastError(f"{named(key)}={value!r}: {e}") from None
        typed[key] = check(value, named(key), kind(f), f.metadata.get("choices"), **bounds(f))
    return cls(**typed)


def parse_kv_args(text: str, cls, flag: str = "--defense-args"):
    """``'key=value,key=value'`` (``-`` in a key read as ``_``) -> ``cls(**values)`` by :func:`coerce`; one-line errors."""
    values = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, raw = item.partition("=")
        if not sep:
            raise PstFastError(f"{flag} {item!r}: expected key=value")
        values[key.strip().replace("-", "_")] = raw
    return coerce(cls, values, flag)
