"""pst_fast.options.coerce: the one way a set of option values (command line, key=value arguments, sweep spec, Python
API) becomes an option dataclass, with one set of one-line error messages."""
import re
from dataclasses import dataclass

import pytest

from pst_fast.cli import main
from pst_fast.errors import PstFastError
from pst_fast.options import coerce, opt, parse_kv_args


@dataclass
class Knobs:
    rate: float = opt(0.5, "a rate", ge=0, lt=1)
    steps: int = opt(10, "a count", ge=1)
    mode: str = opt("fast", "a mode", ("fast", "exact"))
    flip: bool = opt(True, "a switch")
    scale: float = opt(2.0, "an unbounded scale")


def refused(values: dict, where="--knobs", **kw) -> str:
    """The one-line message of ``coerce(Knobs, values, where)``."""
    with pytest.raises(PstFastError) as e:
        coerce(Knobs, values, where, **kw)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_values_and_strings_become_the_fields_kinds():
    k = coerce(Knobs, {"rate": "0.25", "steps": "3", "mode": "exact", "flip": "off", "scale": 3.5}, "--knobs")
    assert k == Knobs(rate=0.25, steps=3, mode="exact", flip=False, scale=3.5)
    assert coerce(Knobs, {}, "--knobs") == Knobs()
    for word, value in (("true", True), ("Yes", True), ("ON", True), ("1", True), ("false", False), ("no", False), ("0", False)):
        assert coerce(Knobs, {"flip": word}, "--knobs").flip is value


def test_an_int_for_a_float_is_kept_unchanged():
    """Records are named by their options: 1 and 1.0 name different records, so an int given stays an int."""
    k = coerce(Knobs, {"scale": 3}, "--knobs")
    assert k.scale == 3 and type(k.scale) is int
    assert type(parse_kv_args("scale=3", Knobs, "--knobs").scale) is float  # a string is read as the field's kind


def test_unknown_keys_are_refused_listing_the_valid_ones():
    assert refused({"rat": 0.1}) == "--knobs rat: unknown key; expected one of rate, steps, mode, flip, scale"


def test_bad_bool_words_and_unparsable_strings_are_refused():
    assert refused({"flip": "maybe"}) == "--knobs flip='maybe': expected a bool: true/false, yes/no, on/off or 1/0"
    assert refused({"steps": "2.5"}) == "--knobs steps='2.5': expected an integer"
    assert refused({"rate": "half"}) == "--knobs rate='half': expected a float"
    assert refused({"flip": 1}) == "--knobs flip=1: expected a bool, got int"  # only strings are parsed
    assert refused({"steps": True}) == "--knobs steps=True: expected an integer, got bool"


def test_bounds_finiteness_and_choices():
    assert refused({"rate": 1.0}) == "--knobs rate=1.0: expected a finite number >= 0 and < 1"
    assert refused({"rate": "nan"}) == "--knobs rate=nan: expected a finite number >= 0 and < 1"
    assert refused({"scale": float("inf")}) == "--knobs scale=inf: expected a finite number >= 0"  # >= 0: its default is
    assert refused({"steps": 0}) == "--knobs steps=0: expected an integer >= 1"
    assert refused({"mode": "slow"}) == "--knobs mode='slow': expected one of fast, exact"


def test_where_names_the_source():
    assert refused({"steps": 0}, "attack em: parameter") == "attack em: parameter steps=0: expected an integer >= 1"
    assert refused({"steps": 0}, "") == "steps=0: expected an integer >= 1"
    assert refused({"steps": 0}, "", flags=True) == "--steps=0: expected an integer >= 1"
    line = {"rate": 4, "steps": 5}
    assert refused({"steps": 0}, lambda key: f"spec.toml:{line[key]}: [knobs]") == "spec.toml:5: [knobs] steps=0: expected an integer >= 1"


def test_key_value_text_is_split_then_coerced():
    assert parse_kv_args(" rate=0.1, mode=exact,flip=no ", Knobs, "--knobs") == Knobs(rate=0.1, mode="exact", flip=False)
    with pytest.raises(PstFastError, match=re.escape("--knobs 'steps': expected key=value")):
        parse_kv_args("steps", Knobs, "--knobs")


def test_the_command_line_parses_with_the_same_words(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--epochs", "two", "--out", str(tmp_path / "run")])
    assert e.value.code == 2
    assert "argument --epochs: 'two': expected an integer" in capsys.readouterr().err
