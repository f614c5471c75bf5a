"""Console entry point: ``nwc --version`` answers before the command line loads.

Loading the commands imports numpy, click and the codec's modules (~0.3 s); a version query
needs none of them. Everything else goes to ``main.main``.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    # One BLAS thread unless asked (--threads raises it later, codec/engine.blas_threads):
    # OpenBLAS otherwise starts a thread per core while numpy imports (~70 ms, measured).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if sys.argv[1:] in (["--version"], ["-V"]):
        from .. import __version__
        from ..formats.version import FORMAT_VERSION

        # The same line as click's version option in main.py.
        print(f"nwc {__version__} (container format {FORMAT_VERSION})")
        return
    from .main import main as run

    run()
