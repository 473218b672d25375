"""Build the pybind11 extension ``pst_fast._C`` from ``csrc/`` and map ``kernels/`` to ``pst_fast.kernels``
and ``benchmarks/`` to ``pst_fast.benchmarks`` (the suite of ``pst-fast bench``) in the installed package; a checkout
imports the same folders under those names without an install (``pst_fast/checkout.py``).

The extension needs no torch headers: Python passes contiguous buffers (raw pointers plus sizes).
"""
import os
import sys

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

sources = sorted(os.path.join("csrc", f) for f in os.listdir("csrc") if f.endswith(".cpp"))

compile_args = ["-O3", "-fopenmp", "-fno-math-errno"]
link_args = ["-fopenmp"]
if sys.platform == "darwin":  # Apple clang: OpenMP comes from libomp
    compile_args = ["-O3", "-Xpreprocessor", "-fopenmp"]
    link_args = ["-lomp"]

ext_modules = [
    Pybind11Extension(
        "pst_fast._C",
        sources,
        cxx_std=17,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
]

setup(
    packages=["pst_fast", "pst_fast.data", "pst_fast.ops", "pst_fast.models", "pst_fast.training", "pst_fast.defenses", "pst_fast.attacks", "pst_fast.metrics", "pst_fast.sweep", "pst_fast.kernels", "pst_fast.benchmarks"],
    package_dir={"pst_fast.kernels": "kernels", "pst_fast.benchmarks": "benchmarks"},
    package_data={"pst_fast.data": ["assets/*.tar.gz"], "pst_fast.sweep": ["*.toml", "*.js", "*.css"], "pst_fast.attacks": ["*.json"]},
    ext_modules=ext_modules,
    cmdclass={"build_ext": build_ext},
    zip_safe=False,
)
