"""Option fields: dataclass fields that carry their help text, so the CLI is built from the dataclass."""
import dataclasses
from dataclasses import field

from .errors import PstFastError


def opt(default, help: str, choices=None):
    """A dataclass field with ``default``, a ``help`` line for ``--help`` and optional ``choices``."""
    return field(default=default, metadata={"help": help, "choices": choices})


def parse_defense_args(text: str, cls):
    """``'key=value,key=value'`` -> ``cls(**values)``, typed by the dataclass defaults; one-line errors."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields:
            raise PstFastError(f"--defense-args {item!r}: expected key=value with key one of {', '.join(fields)}")
        default = fields[key].default
        try:
            values[key] = type(default)(raw) if not isinstance(default, bool) else raw.lower() in ("1", "true", "yes", "on")
        except ValueError:
            raise PstFastError(f"--defense-args {key}={raw!r}: expected a {type(default).__name__}") from None
    return cls(**values)
