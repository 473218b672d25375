"""Sweeps: a TOML spec of attacks × defenses × models × datasets × seeds, expanded into content-hashed cells."""
from pathlib import Path

from .plan import Cell, Poison, expand, intro_text, plan_text
from .spec import Spec, SpecError, load_spec, parse_spec

EXAMPLE_SPEC = Path(__file__).with_name("example.toml")
QUICKSTART_SPEC = Path(__file__).with_name("quickstart.toml")

__all__ = ["Cell", "EXAMPLE_SPEC", "QUICKSTART_SPEC", "Poison", "Spec", "SpecError", "expand", "intro_text", "load_spec", "parse_spec", "plan_text"]
