"""The source tree imports as it stands: with a checkout on PYTHONPATH (no install of it), ``pst_fast.kernels`` and
``pst_fast.benchmarks`` are the checkout's top-level ``kernels/`` and ``benchmarks/`` (pst_fast.checkout), whatever
else is installed; in the installed layout (the subpackages inside ``pst_fast/``, as a wheel has them) no finder is
added. Each case runs in a fresh interpreter started elsewhere, with only PYTHONPATH pointing at the tree."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from pst_fast.checkout import FOLDERS

ROOT = Path(__file__).resolve().parents[1]

# Imports every module of both packages (the kernels need triton) and prints where each came from.
PROBE = """
import importlib, importlib.util, json, pkgutil, sys
import pst_fast, pst_fast.kernels, pst_fast.benchmarks
from pst_fast.checkout import CheckoutFinder
found = {"pst_fast": pst_fast.__file__, "finder": any(isinstance(f, CheckoutFinder) for f in sys.meta_path)}
for pkg in (pst_fast.kernels, pst_fast.benchmarks):
    found[pkg.__name__] = pkg.__file__
    for m in pkgutil.iter_modules(pkg.__path__):
        name = f"{pkg.__name__}.{m.name}"
        needs_triton = pkg is pst_fast.kernels and importlib.util.find_spec("triton") is None
        found[name] = importlib.util.find_spec(name).origin if needs_triton else importlib.import_module(name).__file__
print(json.dumps(found))
"""


def probe(tree: Path, cwd: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")} | {"PYTHONPATH": str(tree), "PYTHONNOUSERSITE": "1"}
    r = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.splitlines()[-1])


def modules(folder: Path) -> set[str]:
    return {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}


def check(found: dict, pst_fast_dir: Path, folders: dict[str, Path]) -> None:
    assert Path(found["pst_fast"]) == pst_fast_dir / "__init__.py"
    for name, folder in folders.items():
        pkg = f"pst_fast.{name}"
        assert Path(found[pkg]) == folder / "__init__.py"
        assert {k.rsplit(".", 1)[1] for k in found if k.startswith(pkg + ".")} == modules(folder) != set()
        for mod in modules(folder):
            assert Path(found[f"{pkg}.{mod}"]) == folder / f"{mod}.py"


def test_checkout_imports_its_top_level_folders(tmp_path):
    found = probe(ROOT, tmp_path)
    check(found, ROOT / "pst_fast", {"kernels": ROOT / "kernels", "benchmarks": ROOT / "benchmarks"})
    assert found["finder"]


def test_installed_layout_needs_no_finder(tmp_path):
    site = tmp_path / "site"
    shutil.copytree(ROOT / "pst_fast", site / "pst_fast", ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd"))
    for name in ("kernels", "benchmarks"):  # where setup.py's package_dir puts them
        shutil.copytree(ROOT / name, site / "pst_fast" / name, ignore=shutil.ignore_patterns("__pycache__"))
    found = probe(site, tmp_path)
    check(found, site / "pst_fast", {"kernels": site / "pst_fast" / "kernels", "benchmarks": site / "pst_fast" / "benchmarks"})
    assert not found["finder"]


def test_setup_maps_the_same_folders():
    setup = (ROOT / "setup.py").read_text()
    for name in FOLDERS:
        assert f'"pst_fast.{name}": "{name}"' in setup, f"setup.py does not map {name}/ to pst_fast.{name}"


def test_ops_table_names_every_op_and_existing_files():
    import pst_fast.ops

    doc = pst_fast.ops.__doc__
    paths = re.findall(r"[\w/]+\.(?:py|cpp)\b", doc)
    assert paths and not [p for p in paths if not (ROOT / p).is_file()]
    assert not [name for name in pst_fast.ops.__all__ if name not in doc]
