"""Benchmarks and diagnostics, run by hand from a checkout: ``python -m bench.quality DATA``
(``python bench/quality.py DATA`` works too). Not installed with nwc; tests import the
modules as ``bench.*``. Shared helpers live in ``bench/common.py``."""
