"""Text for the terminal: names that come from files (class names, archive members, paths, spec aliases) shown with
their control characters escaped, so that a crafted name cannot move the cursor, recolour or split an output line."""
from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text) -> str:
    """``str(text)`` with each control character (C0, DEL, C1, line/paragraph separators, bidirectional overrides)
    written as a Python escape (``\\n``, ``\\x1b``, ``\\u202e``); anything else, non-ASCII letters included, unchanged."""
    def escape(m: re.Match) -> str:
        return repr(m.group())[1:-1]

    return _CONTROL.sub(escape, str(text))
