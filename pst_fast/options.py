"""Option fields: dataclass fields that carry their help text, so the CLI is built from the dataclass."""
import dataclasses
from dataclasses import field

from .errors import PstFastError


def opt(default, help: str, choices=None, const=None):
    """A dataclass field with ``default``, a ``help`` line for ``--help``, optional ``choices``, and an optional
    ``const``: the value of the bare flag (``--sal`` alone means ``--sal fast``)."""
    return field(default=default, metadata={"help": help, "choices": choices, "const": const})


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
