"""Errors the command line reports as one line (no traceback)."""

from __future__ import annotations


class InputError(ValueError):
    """Input audio that cannot be read."""
