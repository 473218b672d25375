"""The benchmark scripts, one per measured path; installed as ``pst_fast.benchmarks`` for ``pst-fast bench``.

Each runs alone (``python benchmarks/NAME.py --help``) and exposes ``suite(quick, peaks)`` for the suite."""
