#!/usr/bin/env python3
"""The NumPy engine against the torch engine on real audio: symbols, audio, speed.

For each tier (default: every installed one) it codes the dev clips of its corpus (speech
for 16 kHz tiers, music for 44.1 kHz ones) with both engines through ``nwc.codec.api`` and
reports

* the fraction of symbols (per layer, LSF symbols included) the two encoders chose
  differently: latents within float rounding of a quantization boundary (a later layer's
  latents also move wherever a lower layer's decoded frames differ);
* the largest difference between the two engines' decodes of the same (NumPy) stream;
* warm coding speed (audio seconds per second, one thread) of each engine.

Usage::

    python bench/engines.py [--tiers a,b] [--corpus /work/corpus] [--clips N]

Markdown on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

if not __package__:  # `python bench/engines.py`: import the bench package beside it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "bench"
from .common import log  # noqa: E402


def clips(corpus: Path, rate: int, n: int) -> list[np.ndarray]:
    kind = "speech" if rate <= 24000 else "music"
    files = sorted((corpus / kind / "dev").rglob("*.wav"))[:n]
    out = []
    for f in files:
        x, sr = sf.read(str(f), dtype="float32", always_2d=True)
        if sr != rate:
            import soxr
            x = soxr.resample(x, sr, rate)
        out.append(x)
    return out


def spy(tier) -> list[list[np.ndarray]]:
    """Record the symbols a tier's encoder chooses (network codes per layer, LSFs first)."""
    rec: list[list[np.ndarray]] = []
    model = tier.model
    enc = model.encode_frames

    def encode_frames(frames, n):
        syms = enc(frames, n)
        rec.append([s.copy() for s in syms])
        return syms

    model.encode_frames = encode_frames
    if model.lsf is not None:
        to_sym = model.lsf.to_symbols

        def lsf_symbols(lsf):
            s = to_sym(lsf)
            rec.append([s.copy()])
            return s

        model.lsf.to_symbols = lsf_symbols
    return rec


def run_tier(name: str, corpus: Path, n_clips: int) -> list[str]:
    import torch
    from nwc.codec import api, engine
    from nwc.codec import tier as tiers

    torch.set_num_threads(1)
    engine.blas_threads(1)
    nt, tt = engine.load_path(tiers.find(name)), tiers.load_path(tiers.find(name))
    data = clips(corpus, nt.sample_rate, n_clips)
    seconds = sum(x.shape[0] for x in data) / nt.sample_rate
    rec_n, rec_t = spy(nt), spy(tt)
    times = {}
    streams = []
    for t in (nt, tt):  # one-off set-up out of the timings and the counts
        api.encode_array(t, data[0][: nt.sample_rate], nt.sample_rate)
    rec_n.clear()
    rec_t.clear()
    for label, t in (("numpy", nt), ("torch", tt)):
        start = time.perf_counter()
        for x in data:
            p = api.encode_array(t, x, nt.sample_rate)
            if label == "numpy":
                streams.append((x, p))
        times[f"enc_{label}"] = time.perf_counter() - start
    layers = max(len(r) for r in rec_n)
    diff = np.zeros(layers + 1)
    total = np.zeros(layers + 1)
    for a, b in zip(rec_n, rec_t, strict=True):
        is_lsf = len(a) == 1 and a[0].shape[-1] == 1 and nt.lpc
        for k, (sa, sb) in enumerate(zip(a, b, strict=True)):
            slot = 0 if is_lsf else k + 1
            diff[slot] += np.count_nonzero(sa != sb)
            total[slot] += sa.size
    worst = 0.0
    dec_times = {"numpy": 0.0, "torch": 0.0}
    for x, packets in streams:
        h = api.header_for(nt, nt.sample_rate, x.shape[1], x.shape[0])
        outs = {}
        for label, t in (("numpy", nt), ("torch", tt)):
            start = time.perf_counter()
            outs[label] = api.decode_packets(t, h, packets)
            dec_times[label] += time.perf_counter() - start
        worst = max(worst, float(np.abs(outs["numpy"] - outs["torch"]).max()))
    parts = [f"{100 * diff[k] / total[k]:.4f} % ({int(diff[k])} of {int(total[k])})"
             for k in range(layers + 1) if total[k]]
    labels = (["LSF"] if total[0] else []) + [f"layer {k}" for k in range(1, layers + 1)]
    log(f"{name}: {seconds:.1f} s, " + ", ".join(f"{a} {b}" for a, b in zip(labels, parts,
                                                                             strict=True)))
    return [name, f"{seconds:.1f}", "<br>".join(f"{a}: {b}" for a, b in zip(labels, parts,
                                                                            strict=True)),
            f"{worst:.1e}",
            f"{seconds / times['enc_numpy']:.0f} / {seconds / times['enc_torch']:.0f}",
            f"{seconds / dec_times['numpy']:.0f} / {seconds / dec_times['torch']:.0f}"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiers", help="comma-separated tier names (default: all installed)")
    ap.add_argument("--corpus", default="/work/corpus", type=Path)
    ap.add_argument("--clips", type=int, default=16, help="dev clips per tier")
    args = ap.parse_args(argv)
    from nwc.codec import catalog

    names = args.tiers.split(",") if args.tiers else sorted(catalog.available())
    rows = [run_tier(n, args.corpus, args.clips) for n in names]
    print("| tier | dev audio (s) | symbols the engines chose differently | max decode "
          "difference | encode x real time, NumPy / torch | decode x real time, NumPy / torch |")
    print("|---|---:|---|---:|---:|---:|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
