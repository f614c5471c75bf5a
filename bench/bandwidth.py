"""How much of music's ViSQOL lives in the top octave, and how much of it a tier keeps.

Two tables on the music dev clips (the middle ``--seconds`` of each, 44.1 kHz, per channel):

1. ``--lowpass``: ViSQOL (audio mode) of the reference against itself low-passed (8th-order
   Butterworth, zero phase) at each cutoff: the score a codec that codes that band perfectly
   and nothing above it could reach.
2. ``--tiers``: each tier's decode (through the CLI, all layers) against the reference, as the
   level difference in dB (decoded − reference) of the energy in each frequency band, averaged
   over clips and channels: where a tier drops energy (negative) or adds it (positive).

    python bench/bandwidth.py /work/corpus/music/dev --clips 8 --lowpass 11000,14000,16000,18000
    NWC_WEIGHTS=/work/relay/music-psy48 python bench/bandwidth.py /work/corpus/music/dev \\
        --tiers music:1,music,music-psy48
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

if not __package__:  # `python bench/bandwidth.py`: import the bench package beside it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import md_table, pick_clips  # noqa: E402

RATE = 44100
EDGES = (0, 4000, 8000, 12000, 14000, 16000, 18000, 22050)
SILENT_RMS = 1e-5


def band_energy_db(x: np.ndarray, rate: int, edges: tuple[int, ...] = EDGES) -> np.ndarray:
    """Energy (dB) of mono ``x`` in each band [edges[i], edges[i+1]) of its Hann spectrum."""
    spec = np.abs(np.fft.rfft(x * np.hanning(x.shape[0]))) ** 2
    f = np.fft.rfftfreq(x.shape[0], 1.0 / rate)
    return np.array([10 * np.log10(spec[(f >= a) & (f < b)].sum() + 1e-20)
                     for a, b in zip(edges, edges[1:], strict=False)])


def is_full_band(ref_db: np.ndarray) -> bool:
    """Whether a reference's bands above 16 kHz hold real content: within 50 dB of its
    loudest band (band-limited sound effects and MIDI renderings are far below that)."""
    return bool(ref_db[-2:].max() > ref_db.max() - 50.0)


def lowpass(x: np.ndarray, cutoff: float, rate: int) -> np.ndarray:
    """``x`` (samples, ...) through an 8th-order zero-phase Butterworth low-pass."""
    from scipy.signal import butter, sosfiltfilt
    return sosfiltfilt(butter(8, cutoff, fs=rate, output="sos"), x, axis=0)


def excerpt(path: Path, seconds: float) -> np.ndarray:
    """The middle ``seconds`` of a 44.1 kHz file as (samples, channels) float64."""
    x, sr = sf.read(str(path), always_2d=True)
    if sr != RATE:
        raise SystemExit(f"{path}: {sr} Hz, this benchmark reads 44.1 kHz music")
    n = min(x.shape[0], int(seconds * RATE))
    o = (x.shape[0] - n) // 2
    return x[o: o + n]


def loud_channels(x: np.ndarray) -> list[int]:
    return [c for c in range(x.shape[1]) if np.sqrt(np.mean(x[:, c] ** 2)) > SILENT_RMS]


def decode_with(spec: str, x: np.ndarray, work: Path) -> np.ndarray:
    """``x`` through ``nwc encode -t NAME [-l K]`` (``spec`` = ``NAME`` or ``NAME:K``, K
    layers; every layer without) and ``nwc decode``."""
    tier, _, k = spec.partition(":")
    nwc = str(Path(sys.executable).parent / "nwc")
    ref, enc, dec = work / "ref.wav", work / "out.nwc", work / "out.wav"
    sf.write(str(ref), x, RATE, subtype="PCM_16")
    subprocess.run([nwc, "encode", str(ref), str(enc), "-t", tier, *(["-l", k] if k else []),
                    "-f", "-q"], check=True)
    subprocess.run([nwc, "decode", str(enc), str(dec), "-f", "-q"], check=True)
    y, _ = sf.read(str(dec), always_2d=True)
    return y[: x.shape[0]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--lowpass", default="", help="comma-separated cutoffs in Hz")
    ap.add_argument("--tiers", default="", help="comma-separated tiers, NAME or NAME:LAYERS")
    args = ap.parse_args(argv)
    clips = [excerpt(p, args.seconds) for p in pick_clips(args.data, args.clips)]
    if args.lowpass:
        from nwc.evaluation import metrics
        visqol = metrics.visqol_for("audio")
        rows = []
        for fc in (float(c) for c in args.lowpass.split(",")):
            scores = [np.mean([visqol(x[:, c], lowpass(x, fc, RATE)[:, c], RATE)
                               for c in loud_channels(x)]) for x in clips]
            rows.append([f"{fc / 1000:g} kHz", f"{np.mean(scores):.2f}",
                         f"{np.min(scores):.2f}"])
        print("\n".join(md_table(["low-pass", "ViSQOL (mean)", "ViSQOL (worst clip)"], rows)))
    if args.tiers:
        names = [f"{a / 1000:g}-{b / 1000:g} kHz" for a, b in zip(EDGES, EDGES[1:], strict=False)]
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for tier in args.tiers.split(","):
                diffs, full = [], []
                for x in clips:
                    y = decode_with(tier, x, Path(tmp))
                    for c in loud_channels(x):
                        ref = band_energy_db(x[:, c], RATE)
                        diffs.append(band_energy_db(y[:, c], RATE) - ref)
                        full.append(is_full_band(ref))
                d, full = np.array(diffs), np.array(full)
                rows.append([tier, *(f"{v:+.1f}" for v in d.mean(axis=0)),
                             f"{d[full][:, 4:].mean():+.1f}" if full.any() else "-"])
        print("\n".join(md_table(["tier", *names, "above 14 kHz, full-band clips"], rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
