"""``pst_fast.kernels`` and ``pst_fast.benchmarks`` when pst_fast runs from a source checkout.

The design card keeps the Triton kernels and the benchmark scripts in the checkout's top-level folders ``kernels/``
and ``benchmarks/``; a wheel carries them as the subpackages ``pst_fast/kernels`` and ``pst_fast/benchmarks``
(setup.py's ``package_dir``). A checkout on ``PYTHONPATH`` has no such subpackages, and an editable install maps
the names to *its* checkout, not to the one on ``PYTHONPATH``. So when this ``pst_fast`` sits in a checkout (the
sibling folders exist, the subpackages do not), :func:`install` puts a finder first on ``sys.meta_path`` that maps
exactly those two names to the sibling folders; their modules (``pst_fast.kernels.augment``) are then found the
ordinary way, in the package's ``__path__``. An installed wheel gets no finder.
"""
from __future__ import annotations

import importlib.util
import sys
from importlib.machinery import ModuleSpec
from pathlib import Path

FOLDERS = ("kernels", "benchmarks")  # top-level folders of a checkout, imported as pst_fast.<folder>


class CheckoutFinder:
    """A meta-path finder of ``pst_fast.<folder>`` -> ``root/<folder>`` for the :data:`FOLDERS`, nothing else."""

    def __init__(self, root: Path):
        self.packages = {f"pst_fast.{name}": root / name for name in FOLDERS}

    def find_spec(self, fullname: str, path=None, target=None) -> ModuleSpec | None:
        folder = self.packages.get(fullname)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(fullname, folder / "__init__.py", submodule_search_locations=[str(folder)])


def install() -> None:
    """Add the :class:`CheckoutFinder` of this checkout (once) when pst_fast runs from one."""
    package = Path(__file__).parent
    root = package.parent
    if not all((root / name / "__init__.py").is_file() and not (package / name).exists() for name in FOLDERS):
        return
    finder = CheckoutFinder(root)
    if not any(getattr(f, "packages", None) == finder.packages for f in sys.meta_path):
        sys.meta_path.insert(0, finder)
