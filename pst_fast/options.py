"""Option fields: dataclass fields that carry their help text, so the CLI is built from the dataclass."""
from dataclasses import field


def opt(default, help: str, choices=None):
    """A dataclass field with ``default``, a ``help`` line for ``--help`` and optional ``choices``."""
    return field(default=default, metadata={"help": help, "choices": choices})
