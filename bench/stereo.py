"""Stereo coding choices on real stereo audio: bits vs SI-SNR of L and R.

Each CONFIG is ``MODE[:THRESHOLD][/GAIN][/sN][/lK][/kN]``: MODE lr, ms or auto (THRESHOLD: M/S
when the side's energy is below THRESHOLD × the quieter of L and R), GAIN ``mid`` (S normalised
by M's gain unless S is louder), ``own`` (by its own) or ``half`` (halfway in dB) whatever S's
depth (default: the codec's rule, mid when S carries every layer, else own), ``sN`` the layers
S carries, ``lK`` the layers coded, ``kN`` send an S N gain steps (0.75 dB) below its M as
silence (``k0``: no silent channels at all). The stream is decoded at the tier's rate and
compared with the input resampled to that rate (soxr VHQ); the codec has no delay, so no
alignment is needed. SI-SNR is the mean over files and both channels.

    python bench/stereo.py /work/corpus/music/dev --tier speech-16k --tier speech-24k \\
        --configs lr auto:0.1/own auto:0.1/mid auto:0.25/mid ms/mid --seconds 15
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
from nwc.codec import api
from nwc.codec import stereo as sc
from nwc.codec import tier as tiers
from nwc.evaluation.metrics import si_snr
from nwc.formats.container import encode_header, encode_packet


@dataclass
class Config:
    name: str
    mode: str = "auto"
    threshold: float | None = None
    gain: str = "codec"
    side_layers: int | None = None
    layers: int | None = None
    skip: int | None = None

    @classmethod
    def parse(cls, s: str) -> Config:
        head, *opts = s.split("/")
        mode, _, thr = head.partition(":")
        c = cls(s, mode, float(thr) if thr else None)
        for o in opts:
            if o in ("mid", "own", "half"):
                c.gain = o
            elif o[0] == "k":
                c.skip = int(o[1:])
            elif o[0] == "s":
                c.side_layers = int(o[1:])
            elif o[0] == "l":
                c.layers = int(o[1:])
            else:
                raise ValueError(f"bad option {o!r} in {s!r}")
        return c


def clips(folder: Path, seconds: float) -> list[tuple[str, np.ndarray, int]]:
    """Up to ``seconds`` of every stereo file, from 10 % into it (skips intros)."""
    out = []
    for p in sorted(folder.rglob("*.wav")):
        x, rate = sf.read(str(p), dtype="float32", always_2d=True)
        if x.shape[1] != 2:
            continue
        n = int(seconds * rate)
        start = min(int(0.1 * x.shape[0]), max(0, x.shape[0] - n))
        out.append((p.name, x[start:start + n], rate))
    return out


def run(t: tiers.Tier, cfg: Config, data: list[tuple[str, np.ndarray, int]]) -> dict:
    orig = sc.side_gain, sc.gain_codes, sc.MS_THRESHOLD, sc.SKIP_CODES
    if cfg.gain != "codec":  # one rule whatever S's depth
        sc.side_gain = {"mid": orig[0], "own": lambda mid, side: side,
                        "half": lambda mid, side: max(side, (mid + side + 1) // 2)}[cfg.gain]
    if cfg.threshold is not None:
        sc.MS_THRESHOLD = cfg.threshold
    if cfg.skip is not None and cfg.skip > 0:
        sc.SKIP_CODES = cfg.skip
    if cfg.gain != "codec" or cfg.skip == 0:
        def gain_codes(own: list[int], stereo: sc.Stereo, skip: bool = True) -> list[int]:
            if cfg.gain != "codec":
                stereo = sc.Stereo(stereo.mode)
            return orig[1](own, stereo, skip and cfg.skip != 0)
        sc.gain_codes = gain_codes
    try:
        total_bytes, secs, snrs, ms_packets, packets = 0, 0.0, [], 0, 0
        per_file = {}
        for name, x, rate in data:
            enc = api.StreamEncoder(t, rate, 2, cfg.layers, stereo=cfg.mode,
                                    side_layers=cfg.side_layers)
            ps = enc.push(x) + enc.finish()
            h = api.header_for(t, rate, 2, x.shape[0], layers=cfg.layers)
            nbytes = len(encode_header(h)) + sum(len(encode_packet(p)) for p in ps) + 37
            y = api.decode_packets(t, h, ps, out_rate=t.sample_rate)
            ref = soxr.resample(x, rate, t.sample_rate, "VHQ")
            n = min(ref.shape[0], y.shape[0])
            s = [si_snr(ref[:n, c].astype(np.float64), y[:n, c].astype(np.float64))
                 for c in range(2)]
            s = [v for v in s if np.isfinite(v)]
            snrs += s
            ms = sum(p.side[2] & 1 for p in ps)
            ms_packets += ms
            packets += len(ps)
            total_bytes += nbytes
            secs += x.shape[0] / rate
            per_file[name] = (8 * nbytes / (x.shape[0] / rate) / 1000, float(np.mean(s)),
                              ms / len(ps))
    finally:
        sc.side_gain, sc.gain_codes, sc.MS_THRESHOLD, sc.SKIP_CODES = orig
    return {"tier": t.name, "config": cfg.name, "kbps": 8 * total_bytes / secs / 1000,
            "si_snr": float(np.mean(snrs)), "ms_share": ms_packets / packets,
            "per_file": per_file}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--tier", action="append", required=True)
    ap.add_argument("--configs", nargs="+", default=["lr", "ms", "auto"])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--out-csv", type=Path)
    ap.add_argument("--per-file", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = clips(args.data, args.seconds)
    print(f"{len(data)} stereo clips, {sum(x.shape[0] / r for _, x, r in data):.1f} s",
          flush=True)
    rows = []
    print("| tier | config | kbps | SI-SNR L/R dB | M/S packets |\n|---|---|---:|---:|---:|",
          flush=True)
    for name in args.tier:
        t = tiers.load(name)
        for c in args.configs:
            t0 = time.perf_counter()
            r = run(t, Config.parse(c), data)
            rows.append(r)
            print(f"| {r['tier']} | {r['config']} | {r['kbps']:.2f} | {r['si_snr']:.2f} | "
                  f"{100 * r['ms_share']:.0f} % |  ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
            if args.per_file:
                for f, (k, s, m) in r["per_file"].items():
                    print(f"    {f}: {k:.2f} kbps {s:.2f} dB M/S {100 * m:.0f} %", flush=True)
    if args.out_csv:
        with open(args.out_csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["tier", "config", "kbps", "si_snr_db", "ms_share"])
            for r in rows:
                w.writerow([r["tier"], r["config"], f"{r['kbps']:.3f}", f"{r['si_snr']:.3f}",
                            f"{r['ms_share']:.3f}"])


if __name__ == "__main__":
    main()
