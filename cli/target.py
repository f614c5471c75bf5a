"""What an OUT path names, so writing it never destroys something else.

``nwc decode x.nwc /dev/null -f`` used to rename a regular file over the device. Outputs are
now sorted before anything is written:

* ``-``, ``/dev/stdout``, ``/dev/fd/1``, ``/proc/self/fd/1``: standard output.
* a character device or a FIFO (``/dev/null``, ``mkfifo``): written directly, as ``cat > x``
  would; nothing is replaced, so no ``--force`` is needed.
* a symlink: followed; its target is written (the link stays a link).
* a regular file (or a new name): a temporary file beside it, renamed into place on success,
  with the old file's permission bits and owner; a file with several hard links is rewritten
  in place at the end instead, so every link sees the new contents.
* a folder, block device or socket: refused with a one-line reason.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

STDOUT_ALIASES = frozenset({"-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"})


class OutputError(ValueError):
    """An OUT that nwc will not write."""


@dataclass(frozen=True)
class Target:
    """Where an output goes: ``stdout``, ``direct`` (device or FIFO) or ``file``."""

    kind: str
    path: str                                   # for ``file``: symlinks resolved
    existing: os.stat_result | None = None      # the regular file that will be replaced

    @property
    def streaming(self) -> bool:
        """Written front to back without seeking (a pipe, a device or stdout)."""
        return self.kind != "file"


def resolve(path: str) -> Target:
    """Classify ``path`` as an output (see the module docstring); raises ``OutputError``."""
    if path in STDOUT_ALIASES:
        return Target("stdout", "-")
    try:
        st = os.stat(path)  # follows symlinks
    except FileNotFoundError:
        # New name, or a dangling symlink: write where the link points (as cp does).
        return Target("file", os.path.realpath(path))
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        raise OutputError(f"{path} is a folder; to code files into a folder use -o {path}")
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return Target("direct", path)
    if stat.S_ISBLK(mode):
        raise OutputError(f"{path} is a block device; refusing to write audio onto it")
    if stat.S_ISSOCK(mode):
        raise OutputError(f"{path} is a socket; pipe into it instead (OUT = -)")
    return Target("file", os.path.realpath(path), st)


def same_file(inp: str, out: str) -> bool:
    """Whether IN and OUT are one file (by device and inode: links and symlinks count)."""
    if inp == "-" or out in STDOUT_ALIASES:
        return False
    try:
        a, b = os.stat(inp), os.stat(out)
    except OSError:
        return False
    # A device or FIFO read and written at once is the user's business (/dev/zero, a pipe).
    return stat.S_ISREG(a.st_mode) and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def keep_attributes(fd: int, existing: os.stat_result | None) -> None:
    """Give a new output the replaced file's mode and owner, or the usual 0666 & ~umask."""
    if existing is None:
        umask = os.umask(0o022)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        return
    try:
        os.fchown(fd, existing.st_uid, existing.st_gid)
    except OSError:  # not ours to give away: the file keeps our ownership
        pass
    os.fchmod(fd, stat.S_IMODE(existing.st_mode))
