"""``nwc tag``: list or edit a stream's tags after the fact (as ``metaflac --set-tag``).

Only the header changes: tags live there alone, and packets carry their own CRCs, so every
byte after the header is copied unchanged and the audio stays bit-exact. The file is replaced
atomically (a temporary file, then a rename; mode, owner and hard links kept).
"""

from __future__ import annotations

import dataclasses
import shutil

import click

from ..formats import container as fmt
from .audio_io import AtomicOutput
from .common import Fatal, debug_option, handle_errors, quiet_option
from .tags import merge, parse_pairs


@click.command("tag")
@click.argument("path", metavar="FILE")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Set a tag, replacing its value (repeatable; a key given twice keeps both "
                   "values joined by '; ').")
@click.option("--remove", "removes", multiple=True, metavar="KEY",
              help="Remove a tag (repeatable; case-insensitive).")
@click.option("--remove-all", is_flag=True, help="Remove every tag first.")
@quiet_option
@debug_option
@handle_errors
def tag(path, sets, removes, remove_all, quiet, debug) -> None:
    """List the tags of an .nwc FILE, or change them (rewriting only its header)."""
    if path == "-":
        raise click.UsageError("nwc tag rewrites a file in place; it cannot edit a pipe "
                               "(tag while encoding: nwc encode --tag KEY=VALUE)")
    new = parse_pairs(sets, "--set")
    with open(path, "rb") as src:
        reader = fmt.ContainerReader(src)
        h, start = reader.header, reader.header_bytes
    if not sets and not removes and not remove_all:
        for k, v in h.tags.items():
            click.echo(f"{k}={v}")
        return
    drop = {k.strip().upper() for k in removes}
    kept = {} if remove_all else {k: v for k, v in h.tags.items() if k.upper() not in drop}
    tags, _ = merge([(k.upper(), v) for k, v in kept.items()], new)
    try:
        head = fmt.encode_header(dataclasses.replace(h, tags=tags))
    except ValueError as e:
        raise Fatal(f"cannot store these tags: {e}") from None
    sink = AtomicOutput(path, force=True)
    with open(path, "rb") as src, sink as out:
        src.seek(start)
        out.write(head)
        shutil.copyfileobj(src, out, 1 << 20)
    if not quiet:
        click.echo(f"nwc: {path}: {len(tags)} tag(s); header rewritten, audio unchanged",
                   err=True)
