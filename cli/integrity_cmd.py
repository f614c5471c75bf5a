"""``nwc test FILE…``: check streams end to end without writing audio (like ``flac -t``).

Every packet is read, CRC-checked and decoded (into nothing); a file passes only if nothing
was damaged, lost, refused or cut, its END packet was read, and the decoded length is the
one END announces. One line per file; exit 1 if any file failed.
"""

from __future__ import annotations

import click

from ..formats import container as fmt
from .common import Fatal, debug_option, describe, handle_errors, quiet_option
from .stdio import std_binary


def check_stream(path: str) -> tuple[bool, str]:
    """(passed, one-line summary) for the stream at ``path`` (``-`` = stdin)."""
    from ..codec import tier as tiers
    from ..codec.api import StreamDecoder

    src = std_binary("stdin") if path == "-" else open(path, "rb")  # noqa: SIM115
    damage: list[str] = []
    with src:
        reader = fmt.ContainerReader(src)
        h = reader.header
        dec = StreamDecoder(tiers.load(h.tier, h.weights_hash), h, conceal="silence")
        frames = 0
        end: fmt.Packet | None = None
        for item in reader:
            if isinstance(item, fmt.Damage):
                damage.append(f"{item.reason} at byte {item.offset}")
            elif item.kind == fmt.END:
                end = item
            frames += sum(b.shape[0] for b in dec.feed(item))
        frames += sum(b.shape[0] for b in dec.drain())
    st = dec.stats
    frames -= st.cut
    problems = damage[:1] + st.notes
    if st.damaged > len(damage):
        problems.append(f"{st.damaged - len(damage)} packet(s) failed to decode")
    if end is None:
        problems.append("no END packet")
    elif end.original_samples is not None and end.original_samples != frames:
        problems.append(f"END says {end.original_samples} samples, decoded {frames}")
    if problems:
        more = f" (+{len(damage) - 1} more damaged stretches)" if len(damage) > 1 else ""
        return False, f"FAILED: {'; '.join(problems)}{more}"
    return True, f"ok ({st.packets} packets, {frames / h.original_rate:.2f} s)"


@click.command("test")
@click.argument("files", metavar="FILE...", nargs=-1, required=True)
@quiet_option
@debug_option
@handle_errors
def test_cmd(files, quiet, debug) -> None:
    """Check .nwc streams end to end: exit 0 only if every packet is intact and END agrees."""
    failed = 0
    for path in files:
        try:
            ok, line = check_stream(path)
        except (fmt.FormatError, OSError, ValueError) as e:
            ok, line = False, f"FAILED: {describe(e)}"
        failed += not ok
        if not ok or not quiet:
            click.echo(f"{path}: {line}", err=True)  # a report, not data: stderr
    if failed:
        raise Fatal(f"{failed} of {len(files)} stream(s) failed")
