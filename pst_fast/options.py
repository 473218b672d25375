"""Option fields: dataclass fields that carry their help text and their valid values, so the CLI is built from the
dataclass and every value is checked by one function, :func:`check` (via :func:`check_field` / :func:`check_fields`),
wherever it comes from: the command line, a sweep spec, ``key=value`` arguments or the Python API."""
from __future__ import annotations

import dataclasses
import math
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


_WORDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
_HOLDS = {"ge": lambda v, b: v >= b, "gt": lambda v, b: v > b, "le": lambda v, b: v <= b, "lt": lambda v, b: v < b}


def check(value, flag: str, typ: type, choices=None, **limits):
    """The one check of an option value: ``typ`` (an int passes for a float, unchanged, so that records named by their
    options keep their names; a bool is never a number), ``choices``, finiteness and the ``limits`` ge/gt/le/lt.
    Returns the value; raises a one-line :class:`PstFastError` naming ``flag`` and what was expected."""
    number = typ in (int, float)
    ok = isinstance(value, (int, float) if typ is float else typ) and not (number and isinstance(value, bool))
    if not ok:
        raise PstFastError(f"{flag}={value!r}: expected {'an integer' if typ is int else 'a ' + typ.__name__}, got {type(value).__name__}")
    if choices and value not in choices:
        raise PstFastError(f"{flag}={value!r}: expected one of {', '.join(map(str, choices))}")
    if number:
        if not (math.isfinite(value) and all(_HOLDS[k](value, b) for k, b in limits.items())):
            what = "an integer" if typ is int else "a finite number"
            rng = " and ".join(f"{_WORDS[k]} {b:g}" for k, b in limits.items())
            raise PstFastError(f"{flag}={value!r}: expected {what}{' ' + rng if rng else ''}")
    return value


def check_field(f: dataclasses.Field, value, flag: str):
    """``value`` checked against the option field ``f`` (see :func:`check`)."""
    return check(value, flag, kind(f), f.metadata.get("choices"), **bounds(f))


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_fields(obj, flag=flag_of) -> None:
    """Every option field of the dataclass instance ``obj`` checked (``flag(name)`` names it in errors)."""
    for f in dataclasses.fields(obj):
        if "help" in f.metadata:
            check_field(f, getattr(obj, f.name), flag(f.name))


def parse_kv_args(text: str, cls, flag: str = "--defense-args"):
    """``'key=value,key=value'`` -> ``cls(**values)``, typed by the dataclass defaults and checked by :func:`check_field`;
    one-line errors."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields:
            raise PstFastError(f"{flag} {item!r}: expected key=value with key one of {', '.join(fields)}")
        typ = kind(fields[key])
        try:
            value = typ(raw) if typ is not bool else raw.lower() in ("1", "true", "yes", "on")
        except ValueError:
            raise PstFastError(f"{flag} {key}={raw!r}: expected a {typ.__name__}") from None
        values[key] = check_field(fields[key], value, f"{flag} {key}")
    return cls(**values)
