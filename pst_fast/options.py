"""Option fields: dataclass fields that carry their help text, so the CLI is built from the dataclass."""
import dataclasses
from dataclasses import field

from .errors import PstFastError

_DEFAULT = object()


def opt(default, help: str, choices=None, const=None, later: bool = False, earlier=_DEFAULT):
    """A dataclass field with ``default``, a ``help`` line for ``--help``, optional ``choices``, and an optional
    ``const``: the value of the bare flag (``--sal`` alone means ``--sal fast``). ``later``: added after records (runs,
    sweep cells, poisons) were first named by their options — see :func:`identity`; ``earlier``: the behaviour those
    records had, when it is not the new default (a changed default: records made under it get new names)."""
    return field(default=default, metadata={"help": help, "choices": choices, "const": const, "later": later,
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


def parse_kv_args(text: str, cls, flag: str = "--defense-args"):
    """``'key=value,key=value'`` -> ``cls(**values)``, typed by the dataclass defaults; one-line errors."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields:
            raise PstFastError(f"{flag} {item!r}: expected key=value with key one of {', '.join(fields)}")
        default = fields[key].default
        try:
            values[key] = type(default)(raw) if not isinstance(default, bool) else raw.lower() in ("1", "true", "yes", "on")
        except ValueError:
            raise PstFastError(f"{flag} {key}={raw!r}: expected a {type(default).__name__}") from None
    return cls(**values)
