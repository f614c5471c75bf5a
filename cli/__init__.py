"""Command line: argument parsing and I/O only."""
