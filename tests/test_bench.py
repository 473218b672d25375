"""pst-fast bench: every benchmark script contributes its entry; ratios are refused when the spreads overlap; the
JSON and Markdown carry what the issue asks for. (No timing is asserted: speed is measured by the suite itself.)"""
import importlib
import json
import sys
import types

import pytest

from pst_fast import bench_suite
from pst_fast.benchmark import Peaks, Timing, entry, ratio
from pst_fast.cli import main


def test_ratio_is_refused_when_the_spreads_overlap_the_difference():
    assert ratio(Timing(1.0, 0.1, []), Timing(2.0, 0.2, [])) == pytest.approx(2.0)
    assert ratio(Timing(1.0, 0.6, []), Timing(1.5, 0.1, [])) is None
    assert ratio(Timing(1.0, 0.1, []), Timing(1.05, 0.1, [])) is None


def test_every_suite_module_exposes_its_entry():
    for name, module in bench_suite.SUITE.items():
        mod = importlib.import_module(f"pst_fast.benchmarks.{module}")
        assert callable(mod.suite), module
        assert f'"{name}"' in open(mod.__file__).read(), f"benchmarks/{module}.py does not name its entry {name!r}"


def test_suite_runner_writes_json_and_markdown(tmp_path, monkeypatch, capsys):
    peaks = Peaks("cpu", 1, 100.0, 10.0, 0.6, bf16_emulated=True)
    fake = types.ModuleType("pst_fast.benchmarks.fake")
    fake.suite = lambda quick, p: [entry("fast", "images/s", 100, Timing(0.5, 0.01, []), Timing(1.0, 0.01, []), "eager", p, "matmul", 5e9),
                                   entry("noisy", "images/s", 100, Timing(0.9, 0.5, []), Timing(1.0, 0.5, []), "eager", p, "copy", 1e9)]
    monkeypatch.setitem(sys.modules, "pst_fast.benchmarks.fake", fake)
    monkeypatch.setattr(bench_suite, "SUITE", {"fast": "fake", "noisy": "fake"})
    monkeypatch.setattr(Peaks, "measure", classmethod(lambda cls, device="cpu": peaks))
    assert main(["bench", "--json", str(tmp_path / "b.json"), "--out", str(tmp_path / "b.md")]) == 0
    recs = json.loads((tmp_path / "b.json").read_text())
    assert [r["name"] for r in recs] == ["fast", "noisy"]
    assert {"name", "value", "unit", "baseline", "ratio", "peak_fraction"} <= set(recs[0])
    assert recs[0]["value"] == pytest.approx(200) and recs[0]["baseline"] == pytest.approx(100) and recs[0]["ratio"] == pytest.approx(2)
    assert recs[0]["peak_fraction"] == pytest.approx(5e9 / 0.5 / 1e9 / 100.0) and recs[1]["ratio"] is None
    table = (tmp_path / "b.md").read_text()
    assert "| fast | 200 images/s" in table and "2.00×" in table and "n/a (spread > difference)" in table
    assert "bfloat16 0.6 GFLOP/s (emulated: no AVX512-BF16 or AMX)" in table
    assert main(["bench", "--only", "nope"]) == 2 and "unknown benchmark" in capsys.readouterr().err
