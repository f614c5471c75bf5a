"""The stream coder's one error type, shared by the payload coder, encoder and decoder."""

from __future__ import annotations


class CodecError(ValueError):
    """Input the codec cannot code, or a stream it cannot decode."""
