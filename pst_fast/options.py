"""Option fields: dataclass fields that carry their help text, so the CLI is built from the dataclass."""
import dataclasses
from dataclasses import field

from .errors import PstFastError


def opt(default, help: str, choices=None, const=None, later: bool = False):
    """A dataclass field with ``default``, a ``help`` line for ``--help``, optional ``choices``, and an optional
    ``const``: the value of the bare flag (``--sal`` alone means ``--sal fast``). ``later``: added after records (runs,
    sweep cells, poisons) were first named by their options — see :func:`identity`."""
    return field(default=default, metadata={"help": help, "choices": choices, "const": const, "later": later})


def identity(obj, leave_out=()) -> dict:
    """The fields of the dataclass ``obj`` that name what it computes: all but ``leave_out``, and a ``later`` field only
    when it differs from its default, so that records named before it existed keep their names."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)
            if f.name not in leave_out and not (f.metadata.get("later") and getattr(obj, f.name) == f.default)}


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
