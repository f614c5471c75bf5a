"""What every ``nwc`` command shares: the error boundary, common options, messages, progress.

Commands import this module (and ``nwc.codec``), never ``main.py``, which only assembles the
group: so no command depends on another, and a new one is a module plus a line in
``main.py``. Exit codes: 0 ok, 1 bad data or runtime failure, 2 usage. Errors are one line on
stderr with a hint; ``--debug`` shows the traceback. Nothing but data goes to stdout.
"""

from __future__ import annotations

import functools
import os
import sys
import time
import traceback
from collections.abc import Callable

import click

from ..formats import container as fmt
from .audio_io import InputError
from .stdio import Terminated
from .target import STDOUT_ALIASES, OutputError


class Fatal(Exception):
    """A user-facing error: one line, exit code 1."""


def say(quiet: bool, msg: str) -> None:
    """A report line on stderr, unless ``--quiet``."""
    if not quiet:
        click.echo(msg, err=True)


def handle_errors(fn: Callable) -> Callable:
    """Turn every failure into one line on stderr and an exit code (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        debug = kwargs.get("debug", False)
        try:
            return fn(*args, **kwargs)
        except BrokenPipeError:
            # The reader went away (`nwc decode x - | head`): leave quietly.
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            except OSError:
                pass
            sys.exit(0)
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM/SIGHUP (stdio.Terminated)
            signum = e.signum if isinstance(e, Terminated) else getattr(e, "signum", 2)
            click.echo(f"nwc: {'terminated' if signum != 2 else 'interrupted'}", err=True)
            sys.exit(128 + signum)
        except click.exceptions.Exit:
            raise
        except click.ClickException:
            raise
        except Exception as e:  # noqa: BLE001 - the CLI's last line of defence
            if debug:
                traceback.print_exc()
            click.echo(f"nwc: error: {describe(e)}", err=True)
            sys.exit(1)

    return wrapper


def describe(e: Exception) -> str:
    """The one line an error is reported as, with a hint where one helps."""
    from ..codec.catalog import TierError  # not codec.tier: reporting must not import torch

    msg = str(e) or type(e).__name__
    if isinstance(e, fmt.UnsupportedVersionError):
        return f"{msg} (upgrade nwc to read it)"
    if isinstance(e, fmt.FormatError):
        return f"{msg} (is this an .nwc stream?)"
    if isinstance(e, TierError):
        return f"{msg} (see `nwc tiers`; set NWC_WEIGHTS to a folder of tiers)"
    if isinstance(e, (FileExistsError, InputError, OutputError, Fatal)):
        return msg
    if isinstance(e, OSError):
        return f"{e.filename or ''}: {e.strerror or msg}".lstrip(": ")
    return f"{type(e).__name__}: {msg} (rerun with --debug for details)"


debug_option = click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No summary or progress.")
force_option = click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")


def kbps_arg(bitrate: str) -> float:
    """``--bitrate`` in kbit/s (a bare number is kbit/s, as for opusenc and lame)."""
    from ..codec.choose import parse_kbps

    try:
        return parse_kbps(bitrate)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--bitrate") from None


def label(path: str) -> str:
    """How a report names an input or output."""
    return "stdout" if path in STDOUT_ALIASES else path


_IMPORTED = time.perf_counter()


def _elapsed_since_start() -> float:
    """Seconds since this process started (interpreter, imports and model load included), so
    "x real time" is what the user waited; since nwc's import where /proc is missing."""
    fallback = time.perf_counter() - _IMPORTED
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            up = float(f.read().split()[0])
        return max(fallback, up - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return fallback


def timer() -> Callable[[], float]:
    """Wall time of this command: from process start, or (batch: many files a process) from
    now."""
    if Progress.enabled:
        return _elapsed_since_start
    t0 = time.perf_counter()
    return lambda: time.perf_counter() - t0


class Progress:
    """Seconds-of-audio progress on stderr, only when it is a terminal."""

    enabled = True  # batch mode turns bars off: several files share one terminal

    def __init__(self, total_s: float | None, quiet: bool, desc: str) -> None:
        self.bar = None
        if not quiet and self.enabled and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total_s, unit="s", desc=desc, file=sys.stderr, leave=False,
                            bar_format="{desc} {n:.1f}/{total_fmt} s audio [{elapsed}, {rate_fmt}]")

    def update(self, s: float) -> None:
        if self.bar is not None:
            self.bar.update(s)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
