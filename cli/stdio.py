"""Process-level safety for the command line: signals, closed std streams, no-clobber rename.

* SIGTERM and SIGHUP raise ``Terminated`` (a ``KeyboardInterrupt``), so every ``with`` block
  unwinds exactly as on Ctrl-C: temporary ``.part`` files are removed, writers closed.
* A closed stdin or stdout (``nwc decode x.nwc - >&-``) is a one-line error, not an
  ``AttributeError`` on ``None``.
* ``publish`` renames a finished temporary file into place, refusing (without ``force``) to
  replace a file that appeared at the target while nwc was writing.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from typing import BinaryIO

from .errors import InputError

__all__ = ["Terminated", "install_signal_handlers", "publish", "std_binary"]


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwind like Ctrl-C, then exit 128 + signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum: int, _frame: object) -> None:
    raise Terminated(signum)


def install_signal_handlers() -> None:
    """SIGTERM/SIGHUP clean up like SIGINT (main thread only, where Python runs handlers)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            signal.signal(sig, _raise)
        except (ValueError, OSError):  # not the main thread, or no such signal here
            pass


def std_binary(name: str) -> BinaryIO:
    """``sys.stdin.buffer`` or ``sys.stdout.buffer``, or a one-line error if it is closed."""
    stream = getattr(sys, name)
    buf = getattr(stream, "buffer", None)
    if buf is None:
        what = "read from" if name == "stdin" else "written to"
        raise InputError(f"{name} is closed: nothing can be {what} it (give a file instead "
                         "of -)")
    return buf


def publish(tmp: str, path: str, force: bool) -> None:
    """Move the finished ``tmp`` to ``path``; without ``force`` never replace a file there.

    A hard link is the atomic no-replace rename POSIX offers; where links are not supported
    the check and the rename are separate steps.
    """
    if force:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(f"{path} appeared while nwc was writing it; kept it (use "
                              "-f/--force to overwrite)") from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP,
                           errno.EMLINK, errno.ENOSYS):
            raise
        if os.path.lexists(path):
            raise FileExistsError(f"{path} appeared while nwc was writing it; kept it (use "
                                  "-f/--force to overwrite)") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)
