"""What the bench scripts share: progress lines, clip choice, the installed tier list, and
Markdown tables, so two scripts never pick clips or read ``nwc tiers`` differently."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

TIMEOUT_S = 1800   # the longest a single tool run may take


class ToolError(RuntimeError):
    """A tool the bench runs that did not answer as needed; the message is one line."""


def log(msg: str) -> None:
    """A progress line on stderr (stdout carries the tables)."""
    print(msg, file=sys.stderr, flush=True)


def pick_clips(data_dir: Path, n: int) -> list[Path]:
    """``n`` evenly spaced .wav files of ``data_dir``'s sorted tree (all when ``n`` <= 0):
    every script that samples a corpus sees the same clips."""
    files = sorted(
        (p for p in data_dir.rglob("*") if p.is_file() and p.suffix.lower() == ".wav"),
        key=lambda p: p.relative_to(data_dir).as_posix(),
    )
    if not files:
        raise SystemExit(f"no .wav files under {data_dir}")
    if n <= 0 or n >= len(files):
        return files
    idx = np.linspace(0, len(files) - 1, n).round().astype(int)
    return [files[i] for i in idx]


def installed_tiers(nwc: list[str], env: dict | None = None, timeout: float = TIMEOUT_S
                    ) -> list[dict]:
    """The named rows of ``nwc tiers --json`` (``nwc``: the command line that runs nwc)."""
    try:
        p = subprocess.run([*nwc, "tiers", "--json"], capture_output=True, text=True, env=env,
                           timeout=timeout)
    except OSError as exc:
        raise ToolError(f"`nwc tiers --json` could not run ({exc})") from None
    if p.returncode != 0:
        why = p.stderr.strip().splitlines()[-1:] or [""]
        raise ToolError(f"`nwc tiers --json` exited {p.returncode}"
                        + (f" ({why[0]})" if why[0] else ""))
    try:
        rows = json.loads(p.stdout or "[]")
    except json.JSONDecodeError as exc:
        raise ToolError(f"unreadable `nwc tiers --json` output ({exc})") from None
    return [t for t in rows if isinstance(t, dict) and t.get("name")]


def md_table(head: list[str], body: list[list[str]]) -> list[str]:
    """Markdown lines of a table: the first column left-aligned, the others right."""
    return ["| " + " | ".join(head) + " |", "|:---|" + "---:|" * (len(head) - 1),
            *("| " + " | ".join(cells) + " |" for cells in body)]
