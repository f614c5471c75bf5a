"""``nwc info``: describe .nwc streams (header, packets, bitrate, damage) without decoding.

Reads the container alone (``nwc.formats``) and the side info's stereo byte: no model, no
torch, and the decoder's length limits (``codec/limits.py``) applied to what a header claims.
"""

from __future__ import annotations

import json
import sys
import traceback

import click

from ..formats import container as fmt
from .common import Fatal, debug_option, describe, handle_errors
from .stdio import std_binary


class _CountingReader:
    """Counts the bytes read through it (the stream size, even on a pipe)."""

    def __init__(self, f) -> None:
        self.f, self.n = f, 0

    def read(self, n: int = -1) -> bytes:
        b = self.f.read(n)
        self.n += len(b)
        return b


def _describe_stream(inp: str) -> dict:
    from ..codec.limits import header_problem
    from ..codec.stereo import MS, split_side  # numpy only: info stays free of torch

    src = std_binary("stdin") if inp == "-" else open(inp, "rb")  # noqa: SIM115
    with src:
        counter = _CountingReader(src)
        reader = fmt.ContainerReader(counter)
        h = reader.header
        problem = header_problem(h)
        if problem:
            raise Fatal(f"stream header out of bounds: {problem}")
        packets = damaged = payload = ms_packets = covered = 0
        side_layers: set[int] = set()
        end = None
        for item in reader:
            if isinstance(item, fmt.Damage):
                damaged += 1
            elif item.kind == fmt.AUDIO:
                packets += 1
                covered = max(covered, item.granule)
                payload += len(item.side) + sum(len(b) for b in item.layers)
                split = split_side(item.side, h.channels)
                if split is not None and split[1].mode == MS:
                    ms_packets += 1
                    side_layers.add(split[1].side_layers or h.num_layers)
            elif item.kind == fmt.END:
                end = item
        total_bytes = counter.n
    samples = end.original_samples if end is not None else h.total_samples
    declared = samples
    refused = samples is not None and not _length_plausible(h, samples, covered)
    if refused:  # a forged length (288 230 376 151 711 s): say what the packets carry
        damaged += 1
        samples = round(covered * h.original_rate / h.sample_rate)
    secs = samples / h.original_rate if samples is not None else None
    # What the packets hold (original rate): less than the duration if cut short.
    present_s = (end.granule if end is not None else covered) / h.sample_rate
    d = {
        "format_version": fmt.FORMAT_VERSION,
        "tier": h.tier, "model_id": h.model_id, "weights_hash": h.weights_hash,
        "sample_rate": h.sample_rate, "original_rate": h.original_rate, "channels": h.channels,
        "total_samples": samples, "duration_s": secs, "codec_delay": h.codec_delay,
        "frame_size": h.frame_size, "hop_size": h.hop_size, "num_layers": h.num_layers,
        "packet_frames": h.packet_frames, "packet_duration_s": h.packet_duration,
        # A packet is coded once its last frame is complete (codec/framing.py).
        "algorithmic_latency_ms": 1000 * (h.packet_samples + h.frame_size - h.hop_size)
        / h.sample_rate,
        "gain_bits": h.gain_bits, "coder": h.coder, "tags": h.tags,
        "packets": packets, "damaged": damaged, "ended": end is not None,
        "present_s": present_s,
        "declared_samples": declared, "length_refused": refused,
        "payload_bytes": payload,
    }
    if h.channels == 2:  # how the encoder coded the pair (codec/stereo.py)
        d["stereo"] = {"ms_packets": ms_packets, "lr_packets": packets - ms_packets,
                       "side_layers": sorted(min(n, h.num_layers) for n in side_layers)}
    d["bytes"] = total_bytes
    rate_s = secs if end is not None else present_s
    if rate_s:
        d["kbps"] = 8 * total_bytes / rate_s / 1000
    return d


def _length_plausible(h: fmt.StreamHeader, samples: int, covered: int) -> bool:
    """Is a declared length (original rate) within what the decoder would fill (limits)?"""
    from ..codec.limits import gap_allowed

    coded = samples * h.sample_rate / h.original_rate
    return gap_allowed(0, max(0, int(coded) - covered), covered, h.sample_rate)


@click.command()
@click.argument("inputs", metavar="IN...", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True,
              help="Machine-readable output (a list when several INs are given).")
@debug_option
@handle_errors
def info(inputs, as_json, debug) -> None:
    """Describe .nwc streams (header, duration, packets, bitrate, tags) without decoding audio.

    Exits 1 if a stream is damaged, cut short or unreadable (after describing the others).
    """
    docs, bad = [], 0
    for inp in inputs:
        try:
            d = {"file": inp, **_describe_stream(inp)}
        except Exception as e:  # noqa: BLE001 - one bad file does not hide the others
            if len(inputs) == 1:
                raise
            if debug:
                traceback.print_exc()
            click.echo(f"nwc: error: {inp}: {describe(e)}", err=True)
            bad += 1
            continue
        bad += bool(d["damaged"] or not d["ended"] or d["length_refused"])
        docs.append(d)
        if not as_json:
            if len(inputs) > 1:
                click.echo(("\n" if len(docs) > 1 else "") + f"{inp}:")
            click.echo(_info_text(d))
    if as_json:
        click.echo(json.dumps(docs[0] if len(inputs) == 1 else docs, indent=1))
    for d in docs:  # a declared length beyond the decoder's limits: an error, after the report
        if d["length_refused"]:
            click.echo(f"nwc: error: {d['file']}: the stream declares {d['declared_samples']} "
                       f"samples but its packets carry {d['total_samples']}: length refused "
                       "(decoder limit)", err=True)
    if bad:
        sys.exit(1)


def _info_text(d: dict) -> str:
    dur = f"{d['duration_s']:.3f} s" if d["duration_s"] is not None else "unknown"
    if not d["ended"]:
        dur = (f"{d['present_s']:.3f} s present of {dur} announced (the stream is cut "
               "short: no end packet)")
    lines = [
        f"tier:        {d['tier']} ({d['model_id']}, weights {d['weights_hash']})",
        f"audio:       {d['channels']} ch, original {d['original_rate']} Hz, "
        f"coded at {d['sample_rate']} Hz",
        f"duration:    {dur} ({d['total_samples']} samples)",
        f"packets:     {d['packets']} x {d['packet_duration_s'] * 1000:.0f} ms "
        f"({d['packet_frames']} frame(s)), {d['num_layers']} layer(s), "
        f"frame {d['frame_size']}/hop {d['hop_size']}",
        f"latency:     {d['algorithmic_latency_ms']:.1f} ms algorithmic (a packet and the "
        "frame overlap)",
        f"coder:       {d['coder']}",
    ]
    if "kbps" in d:
        lines.append(f"bitrate:     {d['kbps']:.2f} kbps ({d['bytes']} bytes)")
    if "stereo" in d:
        s = d["stereo"]
        depth = "/".join(map(str, s["side_layers"]))
        lines.append(f"stereo:      M/S in {s['ms_packets']} of "
                     f"{s['ms_packets'] + s['lr_packets']} packets"
                     + (f", side carries {depth} layer(s)" if depth else ""))
    if d["damaged"] or not d["ended"]:
        lines.append(f"damage:      {d['damaged']} damaged stretch(es), "
                     f"end packet {'present' if d['ended'] else 'MISSING'}")
    for k, v in d["tags"].items():
        lines.append(f"tag:         {k}={v}")
    return "\n".join(lines)
