"""The command line end to end: data import of the real CIFAR-10 archive, info, show, models, help."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pst_fast import data

ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cli(*args, check=True):
    r = subprocess.run([sys.executable, "-m", "pst_fast", *map(str, args)], capture_output=True, text=True)
    if check:
        assert r.returncode == 0, r.stderr[-2000:]
    return r


@pytest.mark.skipif(not ARCHIVE.is_file(), reason="the shared CIFAR-10 JPEG archive is not beside this checkout")
def test_import_real_cifar10_archive(tmp_path):
    cli("data", "import", ARCHIVE, "--out", tmp_path / "c10")
    train, test = data.load(tmp_path / "c10", "train"), data.load(tmp_path / "c10", "test")
    assert (len(train), len(test)) == (50000, 10000)
    assert train.classes == CIFAR10 == test.classes
    assert np.bincount(train.labels).tolist() == [5000] * 10 and np.bincount(test.labels).tolist() == [1000] * 10
    assert train.shape == (32, 32, 3)


def test_info_show_models_help(tmp_path):
    r = cli("data", "info", "cifar10-mini")
    assert "airplane=1000" in r.stdout and "airplane=200" in r.stdout and "ok (sha256 verified)" in r.stdout
    cli("data", "show", "cifar10-mini", "--n", "20", "--out", tmp_path / "g.png")
    im = Image.open(tmp_path / "g.png")
    assert im.size[0] > 100 and len(set(np.asarray(im).reshape(-1, 3)[:, 0].tolist())) > 50
    r = cli("models")
    assert "fastnet" in r.stdout and "resnet18" in r.stdout and "GFLOPs" in r.stdout
    for cmd in ([], ["train"], ["data", "import"], ["models"]):
        assert cli(*cmd, "--help").stdout.count("\n") > 3


def test_bad_data_is_one_line(tmp_path):
    r = cli("data", "info", tmp_path / "nothing", check=False)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "no such dataset" in r.stderr
    r = cli("data", "import", tmp_path / "nothing", "--out", tmp_path / "o", check=False)
    assert r.returncode == 2 and "no such file or directory" in r.stderr


def test_help_states_each_default_once_and_no_timings():
    """Every option's help shows its default at most once, never '(default: None)'; measured run times and speed-ups
    belong in docs/benchmarks.md and docs/sweeps.md, not in the help."""
    import argparse
    import re

    from pst_fast.cli import build_parser

    def parsers(p):
        yield p
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for sub in a.choices.values():
                    yield from parsers(sub)

    timing = re.compile(r"\d\s*(x|×)\b|\d\s*(minutes?|min|hours?|h|s)\b", re.I)
    for p in parsers(build_parser()):
        fmt = p._get_formatter()
        assert not timing.search(p.description or ""), p.prog
        for a in p._actions:
            text = fmt._get_help_string(a) or ""
            assert text.count("(default:") <= 1 and "(default: None)" not in text, f"{p.prog} {a.option_strings}: {text}"
            assert not timing.search(text), f"{p.prog} {a.option_strings}: {text}"
