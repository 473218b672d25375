"""The benchmark scripts, one per measured path; imported as ``pst_fast.benchmarks`` for ``pst-fast bench``
(installed there by setup.py; from a checkout via ``pst_fast.checkout``).

Each runs alone (``python benchmarks/NAME.py --help``) and exposes ``suite(quick, peaks)`` for the suite."""
