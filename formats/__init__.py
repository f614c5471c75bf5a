"""Bitstream container: bytes only, no torch."""
