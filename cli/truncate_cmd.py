"""``nwc truncate``: drop the upper layers of a layered stream without decoding audio.

Bytes in, bytes out: the header is rewritten with the new layer count (its packet size and
everything else stay) and every packet keeps its first k layer payloads (its CRC is
recomputed by the writer). Because each layer's codes
were computed by a closed-loop encoder that only looked at the layers below, the result is
exactly the stream a k-layer encode would have written. Works on pipes, one packet at a time.
"""

from __future__ import annotations

import dataclasses

import click

from ..formats import container as fmt
from .audio_io import AtomicOutput
from .common import Fatal, debug_option, force_option, handle_errors, quiet_option
from .stdio import std_binary


def _layers_for(header: fmt.StreamHeader, bitrate: str) -> int:
    """The most layers whose expected whole-stream rate (all channels, as ``encode -b``
    means it) stays at or below ``bitrate`` (``codec/choose.py``, from the tier's JSON)."""
    from ..codec import catalog, choose, tierfile  # the tier's JSON is enough: no torch

    try:
        want = choose.parse_kbps(bitrate)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--bitrate") from None
    t = tierfile.read(catalog.find(header.tier, header.weights_hash))
    if t.hash != header.weights_hash:
        raise Fatal(f"installed tier {t.name!r} is not the one this stream was coded with")
    try:
        return choose.layers_within(t, header.num_layers, want, header.channels)
    except ValueError as e:
        raise Fatal(str(e)) from None


@click.command()
@click.argument("inp", metavar="IN")
@click.argument("out", metavar="OUT")
@click.option("-l", "--layers", type=click.IntRange(1, 255),
              help="Keep the first LAYERS layers.")
@click.option("-b", "--bitrate",
              help="Keep as many layers as fit this whole-stream rate in kbit/s (per the "
                   "tier's measured bitrates).")
@force_option
@quiet_option
@debug_option
@handle_errors
def truncate(inp, out, layers, bitrate, force, quiet, debug) -> None:
    """Cut a layered .nwc stream IN to fewer layers (a lower bitrate) without re-encoding."""
    if (layers is None) == (bitrate is None):
        raise click.UsageError("give exactly one of --layers or --bitrate")
    sink = AtomicOutput(out, force)
    sink.check(inp)
    src = std_binary("stdin") if inp == "-" else open(inp, "rb")  # noqa: SIM115
    with src:
        reader = fmt.ContainerReader(src)
        h = reader.header
        k = layers if layers is not None else _layers_for(h, bitrate)
        if k > h.num_layers:
            raise Fatal(f"stream has {h.num_layers} layer(s); cannot keep {k}")
        damaged = 0
        with sink as f:
            w = fmt.ContainerWriter(f, dataclasses.replace(h, num_layers=k))
            for item in reader:
                if isinstance(item, fmt.Damage):
                    damaged += 1
                    continue
                if item.kind == fmt.AUDIO:
                    item = dataclasses.replace(item, layers=item.layers[:k])
                w.write(item)
            nbytes = w.bytes_written
    if not quiet:
        click.echo(f"nwc: kept {k} of {h.num_layers} layer(s): {nbytes} bytes", err=True)
    if damaged:
        raise Fatal(f"{damaged} damaged stretch(es) in the input were dropped")
