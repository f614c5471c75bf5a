#!/usr/bin/env python3
"""Packet size: what smaller packets (lower latency) cost in bitrate and quality, per tier.

The encoder chooses how many frames go in a packet (``nwc encode --packet-frames``). Frames
are coded independently, so the packet size changes only (a) the container overhead, 29 + 4n
bytes per packet with n layers (packet framing, CRC, side-info length, layer lengths) plus
the per-packet side info (one gain byte per channel), and (b) the per-packet gain that
normalises the frames before the network: over fewer frames it follows the signal more
closely, which the tiers were not trained for (they saw 16-frame packets).

For every tier and packet size, each clip is coded into a complete stream (header, packets,
END) exactly as ``nwc encode`` writes it (same API, tested byte-identical to the CLI),
decoded, and measured with ``nwc eval``'s code (sub-sample alignment, PESQ-WB, STOI).

    python bench/packets.py /work/corpus/speech/dev [--clips 16] [--tiers a,b]
        [--packet-frames 1,2,4,8,16] [--out-md FILE]

With ``--loss 1,5,10`` (percent) it measures packet loss instead (``bench/plc.py``):
concealment vs silence against the clean decode, and Opus with its own PLC, per packet size.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch
from nwc.codec import api, catalog
from nwc.codec import tier as tiers
from nwc.evaluation import metrics
from nwc.formats.container import END, ContainerWriter, Packet
from nwc.train.data import load_mono

if not __package__:  # `python bench/packets.py`: import the bench package beside it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "bench"
from .common import pick_clips  # noqa: E402


def measure(t: tiers.Tier, clips: list[np.ndarray], pf: int) -> dict:
    """Mean real kbps (and its parts), PESQ-WB and STOI of ``clips`` with ``pf`` frames a
    packet; bitrates are totals over all clips, quality the mean over clips."""
    bits = {"file": 0.0, "payload": 0.0, "side": 0.0}
    seconds, pesq, stoi, packets = 0.0, [], [], 0
    for x in clips:
        pk = api.encode_array(t, x, t.sample_rate, packet_frames=pf)
        h = api.header_for(t, t.sample_rate, 1, x.shape[0], packet_frames=pf)
        buf = io.BytesIO()
        w = ContainerWriter(buf, h)
        for p in pk:
            w.write(p)
            bits["payload"] += 8 * sum(len(b) for b in p.layers)
            bits["side"] += 8 * len(p.side)
        end = Packet(END, len(pk), x.shape[0], b"", [], x.shape[0])
        w.write(end)
        bits["file"] += 8 * w.bytes_written
        packets += len(pk)
        y = api.decode_packets(t, h, [*pk, end])[:, 0]
        rep, _ = metrics.evaluate(x, y, t.sample_rate, metrics=("pesq_wb", "stoi"))
        pesq.append(rep["pesq_wb"])
        stoi.append(rep["stoi"])
        seconds += x.shape[0] / t.sample_rate
    out = {k: v / seconds / 1000 for k, v in bits.items()}
    out["container"] = out["file"] - out["payload"] - out["side"]
    out.update(pesq=float(np.mean(pesq)), stoi=float(np.mean(stoi)), seconds=seconds,
               packets_per_s=packets / seconds)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--tiers", default="", help="comma-separated (default: all installed)")
    ap.add_argument("--packet-frames", default="1,2,4,8,16",
                    help="packet sizes in frames, comma-separated (default 1,2,4,8,16)")
    ap.add_argument("--out-md", type=Path, help="also write the table and notes here")
    ap.add_argument("--loss", help="packet loss rates in percent, e.g. 1,5,10: the loss bench")
    ap.add_argument("--opus-kbps", type=float, default=16.0, help="Opus bitrate (--loss)")
    ap.add_argument("--loss-seeds", type=int, default=1,
                    help="loss patterns per clip and rate, scores averaged (--loss)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    sizes = [int(v) for v in a.packet_frames.split(",")]
    files = pick_clips(a.data, a.clips)
    names = a.tiers.split(",") if a.tiers else sorted(catalog.available())
    if a.loss:
        return loss_main(a, files, names, sizes)
    rows = []
    for name in names:
        t = tiers.load(name)
        clips = [load_mono(p, t.sample_rate) for p in files]
        base = None
        for pf in sorted(sizes, reverse=True):
            t0 = time.perf_counter()
            m = measure(t, clips, pf)
            print(f"[{name}] {pf} frame(s): {m['file']:.2f} kbps, PESQ-WB {m['pesq']:.3f} "
                  f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
            if pf == t.framing.packet_frames:
                base = m
            rows.append((name, pf, catalog.latency_ms(catalog.packet_framing(t, pf),
                                                      t.sample_rate), m))
        for r in rows:
            if r[0] == name and base is not None:
                r[3]["d_pesq"] = r[3]["pesq"] - base["pesq"]
                r[3]["d_kbps"] = r[3]["file"] - base["file"]
    lines = ["| tier | packet frames | algorithmic latency ms | packets/s | real kbps "
             "| Δ kbps | payload kbps | gain kbps | container kbps | PESQ-WB | Δ PESQ-WB "
             "| STOI |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, pf, lat, m in sorted(rows, key=lambda r: (r[0], r[1])):
        d_pesq = f"{m['d_pesq']:+.2f}" if "d_pesq" in m else "–"
        d_kbps = f"{m['d_kbps']:+.2f}" if "d_kbps" in m else "–"
        lines.append(f"| {name} | {pf} | {lat:.0f} | {m['packets_per_s']:.1f} "
                     f"| {m['file']:.2f} | {d_kbps} | {m['payload']:.2f} | {m['side']:.2f} "
                     f"| {m['container']:.2f} | {m['pesq']:.2f} | {d_pesq} | {m['stoi']:.3f} |")
    secs = rows[0][3]["seconds"] if rows else 0.0
    note = (f"\n\n{len(files)} clips ({secs:.1f} s) from `{a.data}`, mono at the tier rate. "
            "Real kbps = bytes of the whole stream (header, packets, END) x 8 / duration; "
            "payload = range-coded layers, gain = side info, container = the rest. Δ: "
            "against the tier's own packet size. Latency = (P x hop + frame - hop) / rate.\n")
    text = "\n".join(lines) + note
    print(text, end="")
    if a.out_md:
        a.out_md.write_text(text)
    return 0


def loss_main(a: argparse.Namespace, files: list[Path], names: list[str], sizes: list[int]
              ) -> int:
    """``--loss``: concealment vs silence vs Opus PLC (``bench/plc.py``)."""
    from . import plc

    rates = [float(v) / 100 for v in a.loss.split(",")]
    lines = ["| tier | loss | PESQ-WB conceal | PESQ-WB silence | ViSQOL conceal "
             "| ViSQOL silence | Opus PLC PESQ-WB | Opus PLC ViSQOL |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    opus = None
    for name in names:
        t = tiers.load(name)
        clips = [load_mono(p, t.sample_rate) for p in files]
        if opus is None:
            opus = plc.opus_loss(clips, t.sample_rate, rates, a.opus_kbps)
        for pf in sizes:
            t0 = time.perf_counter()
            runs = [plc.nwc_loss(t, clips, rates, pf, seed=s) for s in range(a.loss_seeds)]
            res = {k: {m: float(np.mean([r[k][m] for r in runs])) for m in runs[0][k]}
                   for k in runs[0]}
            ms = 1000 * pf * t.framing.hop / t.sample_rate
            lines += plc.table(name, ms, rates, res, opus, a.opus_kbps)
            print(f"[{name}] {pf} frame(s): {time.perf_counter() - t0:.0f} s", file=sys.stderr,
                  flush=True)
    secs = sum(sf_len for sf_len in (load_mono(p, 16000).shape[0] / 16000 for p in files))
    note = (f"\n\n{len(files)} clips ({secs:.1f} s) from `{a.data}`. Each AUDIO packet is "
            f"lost independently with the given probability ({a.loss_seeds} fixed loss "
            "pattern(s) per clip and rate, scores averaged); scores compare the "
            "lossy decode with the clean decode of the same stream (Opus: with its own clean "
            "decode; `opusdec --packet-loss`, 20 ms packets). Conceal: `nwc decode --conceal "
            "auto` (pitch repetition fading to comfort noise, the gap's end grown back into "
            "the next packet, codec/conceal.py); silence: "
            "`--conceal silence`.\n")
    text = "\n".join(lines) + note
    print(text, end="")
    if a.out_md:
        a.out_md.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
