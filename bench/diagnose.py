#!/usr/bin/env python3
"""Where the quality goes: a speech tier's (or anchor's) noise profile, side by side.

For every system on the same 16 kHz clips: real kbps, PESQ-WB, ViSQOL (speech mode), STOI,
and the noise profile of ``nwc.evaluation.noise`` (added / missing band energy overall and
above 3.7 kHz; error-to-signal power in the quietest and loudest active frames and per band).
``--ceiling`` adds, for each nwc tier, the same model with its latents left unquantized (same
framing, gains, LPC filters and overlap-add as the decoder): the trained transform's ceiling.
``--plot DIR`` draws, per system, the reference and decoded spectrograms of the first clip
and their difference (dB).

Usage::

    python bench/diagnose.py DATA_DIR [--tiers speech-16k,path/to/tier.json]
        [--anchors amrwb:6,opus:16] [--clips 16] [--ceiling] [--plot DIR] [--out-md FILE]

Tiers are installed names or tier JSON paths; anchors are ``amrwb:MODE`` (0-8, bench/amrwb.py)
and ``opus:KBPS`` (opusenc VBR). nwc tiers are coded in this process through the library (the
bytes ``nwc encode`` writes); anchors through bench/quality.py's systems.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import math
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from nwc.codec import api, infer
from nwc.codec import tier as tiers
from nwc.evaluation import metrics, noise
from nwc.formats.container import END, Packet, encode_header, encode_packet

if not __package__:  # `python bench/diagnose.py`: import the bench package beside it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "bench"
from . import quality  # noqa: E402

SR = 16000
COLUMNS = (("kbps", "kbps", 2), ("pesq_wb", "PESQ-WB", 2), ("visqol", "ViSQOL", 2),
           ("stoi", "STOI", 3), ("abs_db", "band |Δ| dB", 2), ("added_db", "added dB", 2),
           ("missing_db", "missing dB", 2), ("added_high_db", "added >3.7k dB", 2),
           ("quiet_db", "N/S quiet dB", 1), ("loud_db", "N/S loud dB", 1),
           ("band_0_1000_db", "N/S <1k", 1), ("band_1000_3500_db", "N/S 1-3.5k", 1),
           ("band_3500_top_db", "N/S >3.5k", 1))

Coder = Callable[[np.ndarray, Path], tuple[int, np.ndarray]]  # (pcm, work) -> (bytes, decoded)


class Unquantized:
    """A cascade whose decoder gets the encoder's latents unrounded.

    It stands in for ``tier.model`` in one encode-then-decode of a clip: ``encode_frames``
    codes as usual (so the stream, LSFs and gains are real) and queues each packet's float
    latents; ``decode_frames`` decodes those instead of the symbols' values."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.queue: collections.deque[list[np.ndarray]] = collections.deque()

    def __getattr__(self, name: str):  # everything else is the real model's
        return getattr(self.model, name)

    def encode_frames(self, frames: np.ndarray, n_stages: int) -> list[np.ndarray]:
        m = self.model
        x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))
        total = torch.zeros_like(x)
        symbols, latents = [], []
        with torch.inference_mode():
            for k in range(n_stages):
                stage, s = m.stages[k], m.scale(k)
                lat = infer.encode(stage, (x - total) * s)
                sym = stage.quantizer.to_symbols(lat.numpy())
                symbols.append(sym)
                latents.append(lat.numpy())
                if k + 1 < n_stages:
                    y = infer.decode(stage, torch.from_numpy(stage.quantizer.from_symbols(sym)),
                                     exact=True)
                    total = total + y / s
        self.queue.append(latents)
        return symbols

    def decode_frames(self, symbols: list[np.ndarray]) -> np.ndarray:
        latents = self.queue.popleft()
        m = self.model
        with torch.inference_mode():
            out = sum(infer.decode(m.stages[k], torch.from_numpy(latents[k])) / m.scale(k)
                      for k in range(len(symbols)))
        return out.numpy()


def nwc_coder(tier: tiers.Tier) -> Coder:
    """Code a clip through the library: the bytes ``nwc encode`` writes, then decode."""
    def run(pcm: np.ndarray, work: Path) -> tuple[int, np.ndarray]:
        x = pcm.astype(np.float32)
        packets = api.encode_array(tier, x, SR)
        end = Packet(kind=END, seq=len(packets), granule=len(x), side=b"", layers=[],
                     original_samples=len(x))
        h = api.header_for(tier, SR, 1, len(x))
        size = len(encode_header(h)) + sum(len(encode_packet(p)) for p in [*packets, end])
        return size, api.decode_packets(tier, h, [*packets, end])[:, 0].astype(np.float64)
    return run


def anchor_coder(spec: str) -> tuple[str, Coder]:
    """``amrwb:MODE`` or ``opus:KBPS`` as a coder through bench/quality.py's systems."""
    kind, _, arg = spec.partition(":")
    if kind == "amrwb":
        system = quality.amrwb_system(int(arg or 2))
    elif kind == "opus":
        system = quality.opus_system(int(arg or 16))
    else:
        raise SystemExit(f"unknown anchor {spec!r}: use amrwb:MODE or opus:KBPS")

    def run(pcm: np.ndarray, work: Path) -> tuple[int, np.ndarray]:
        ref_wav = work / "ref.wav"
        pcm16 = np.clip(np.round(pcm * 32768), -32768, 32767).astype(np.int16)
        sf.write(str(ref_wav), pcm16, SR, subtype="PCM_16")
        return system.run(ref_wav, pcm16, work)
    return system.label, run


def load_tier(spec: str) -> tiers.Tier:
    return tiers.load_path(Path(spec)) if spec.endswith(".json") else tiers.load(spec)


def score(ref: np.ndarray, deg: np.ndarray, visqol: quality.Visqol) -> dict[str, float]:
    """Metrics and noise profile of one clip, after the alignment ``nwc eval`` uses."""
    al = metrics.align(ref, deg, SR)
    out: dict[str, float] = {"visqol": visqol(al.ref, al.deg)}
    for name, fn in (("pesq_wb", metrics.pesq_wb), ("stoi", metrics.stoi)):
        try:
            out[name] = fn(al.ref, al.deg, SR)
        except Exception:  # noqa: BLE001 - too little speech in the clip
            out[name] = math.nan
    return {**out, **noise.profile(al.ref, al.deg, SR)}


def measure(coder: Coder, clips: list[np.ndarray], visqol: quality.Visqol,
            plot: Callable[[np.ndarray, np.ndarray], None] | None = None) -> dict[str, float]:
    """Mean of every column over the clips, and the real kbps of all of them together."""
    rows, size = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, ref in enumerate(clips):
            n, deg = coder(ref, Path(tmp))
            size += n
            rows.append(score(ref, deg, visqol))
            if plot is not None and i == 0:
                plot(ref, deg)
    seconds = sum(len(c) for c in clips) / SR
    mean = {k: _mean([r[k] for r in rows]) for k in rows[0]}
    return {"kbps": 8 * size / seconds / 1000, **mean}


def _mean(values: list[float]) -> float:
    """Mean of the finite values (a metric that could not run on a clip is left out)."""
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def plotter(out_dir: Path, label: str) -> Callable[[np.ndarray, np.ndarray], None]:
    def draw(ref: np.ndarray, deg: np.ndarray) -> None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        al = metrics.align(ref, deg, SR)
        f, t, r_db = metrics.spectrogram_db(al.ref, SR)
        _, _, d_db = metrics.spectrogram_db(al.deg, SR)
        fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
        panels = ((r_db, "reference", "magma", None), (d_db, label, "magma", None),
                  (d_db - r_db, "decoded − reference (dB): red = added", "RdBu_r", 20))
        for ax, (img, title, cmap, lim) in zip(axes, panels, strict=True):
            top = img.max()
            kw = {"vmin": -lim, "vmax": lim} if lim else {"vmin": top - 80, "vmax": top}
            ax.pcolormesh(t, f / 1000, img, cmap=cmap, shading="auto", **kw)
            ax.set_title(title)
            ax.set_ylabel("kHz")
        axes[-1].set_xlabel("s")
        fig.tight_layout()
        out_dir.mkdir(parents=True, exist_ok=True)
        fig.savefig(out_dir / f"{label.replace(' ', '_').replace('/', '_')}.png", dpi=80)
        plt.close(fig)
    return draw


def markdown(results: list[tuple[str, dict[str, float]]]) -> str:
    head = "| system | " + " | ".join(c[1] for c in COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(COLUMNS)
    lines = [head, rule]
    for label, r in results:
        cells = [f"{r[k]:.{d}f}" if not math.isnan(r.get(k, math.nan)) else "–"
                 for k, _, d in COLUMNS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def systems(args: argparse.Namespace) -> list[tuple[str, Coder]]:
    out: list[tuple[str, Coder]] = []
    for spec in filter(None, args.tiers.split(",")):
        t = load_tier(spec)
        label = f"nwc {t.name}" if not spec.endswith(".json") else f"nwc {Path(spec).stem}"
        out.append((label, nwc_coder(t)))
        if args.ceiling:
            ceiling = dataclasses.replace(t, model=Unquantized(t.model))
            out.append((f"{label} unquantized", nwc_coder(ceiling)))
    out += [anchor_coder(s) for s in filter(None, args.anchors.split(","))]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data_dir", type=Path)
    p.add_argument("--tiers", default="speech-16k,speech-lpc-16k")
    p.add_argument("--anchors", default="amrwb:2,opus:16")
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--ceiling", action="store_true")
    p.add_argument("--plot", type=Path)
    p.add_argument("--out-md", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    clips = [quality.read_audio(c) for c in quality.pick_clips(args.data_dir, args.clips)]
    visqol = quality.Visqol("speech", SR)
    results = []
    for label, coder in systems(args):
        draw = plotter(args.plot, label) if args.plot else None
        results.append((label, measure(coder, clips, visqol, draw)))
        quality.log(f"{label}: {results[-1]}")
    seconds = sum(len(c) for c in clips) / SR
    text = (f"{len(clips)} clips ({seconds:.0f} s) of {args.data_dir}; {visqol.note}\n\n"
            + markdown(results))
    print(text)
    if args.out_md:
        args.out_md.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
