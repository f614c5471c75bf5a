"""How well each training loss term tracks PESQ-WB: a check of a term before a study trains it.

Dev clips are coded by the shipped speech tiers (every layer prefix) through the CLI and
degraded by white noise and a low-pass; each term of ``nwc.train.objective.TERMS`` is then
computed as training computes it (gain-normalised packets of 7,712 samples) and ranked against
PESQ-WB: Spearman's ρ over every (clip, condition) pair, over the per-condition means, over
the codec conditions' means only, and within each clip (averaged). A good term falls as PESQ-WB
rises (ρ near −1).

    python bench/loss_vs_pesq.py /work/corpus/speech/dev --clips 10
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from nwc.train.objective import TERMS, Pair, Reference
from pesq import pesq

from .common import log, md_table, pick_clips

CODECS = [("speech-low", 1), ("speech-low", 2), ("speech-low", 3), ("speech-16k", 0),
          ("speech-24k", 0), ("speech-lpc-16k", 0), ("speech-lpc-6k", 0),
          ("speech-lpc-layered", 2), ("speech-lpc-layered", 3)]
DEGRADATIONS = [("noise", 15), ("noise", 30), ("lowpass", 4000)]
PACKET = 7712


def degrade(x: np.ndarray, sr: int, kind: str, k: int, seed: int) -> np.ndarray:
    if kind == "noise":
        rng = np.random.default_rng(seed)
        sigma = np.sqrt(np.mean(x ** 2) / 10 ** (k / 10))
        return (x + sigma * rng.standard_normal(len(x))).astype(np.float32)
    spec = np.fft.rfft(x)
    return np.fft.irfft(spec * (np.fft.rfftfreq(len(x), 1 / sr) < k), n=len(x)).astype(
        np.float32)


def code(ref: Path, work: Path, tier: str, layers: int) -> np.ndarray:
    stream, out = work / "o.nwc", work / "o.wav"
    extra = ["--layers", str(layers)] if layers else []
    subprocess.run(["nwc", "encode", str(ref), str(stream), "--tier", tier, *extra, "-f", "-q"],
                   check=True)
    subprocess.run(["nwc", "decode", str(stream), str(out), "-f", "-q"], check=True)
    return sf.read(out, dtype="float32")[0]


def term_values(x: np.ndarray, y: np.ndarray, sr: int) -> list[float]:
    n = len(x) // PACKET * PACKET
    a = torch.from_numpy(x[:n].reshape(-1, PACKET).copy())
    b = torch.from_numpy(y[:n].reshape(-1, PACKET).copy())
    g = a.pow(2).mean(1, keepdim=True).sqrt() + 1e-4
    pair = Pair(b / g, Reference(a / g, sr, g))
    return [float(TERMS[t][0](pair)) for t in TERMS]


def rho(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (no ties expected in real-valued scores)."""
    ra, rb = (np.argsort(np.argsort(v)).astype(float) for v in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--clips", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []   # (clip, condition, is_codec, pesq, *terms)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for ci, clip in enumerate(pick_clips(args.data_dir, args.clips)):
            x, sr = sf.read(clip, dtype="float32")
            x = x[: int(args.seconds * sr)]
            ref = work / "ref.wav"
            sf.write(ref, x, sr)
            for name, k in CODECS + DEGRADATIONS:
                codec = (name, k) in CODECS
                y = code(ref, work, name, k) if codec else degrade(x, sr, name, k, ci)
                y = y[: len(x)]
                rows.append((ci, f"{name}:{k}", codec, pesq(sr, x, y, "wb"),
                             *term_values(x, y, sr)))
            log(f"clip {ci + 1}/{args.clips} done")
    names = list(TERMS)
    conds = collections.defaultdict(list)
    for r in rows:
        conds[r[1]].append(r)
    body = []
    for i, t in enumerate(names):
        col = 4 + i
        means = [(np.mean([r[3] for r in rs]), np.mean([r[col] for r in rs]), rs[0][2])
                 for rs in conds.values()]
        within = np.mean([rho([r[3] for r in rows if r[0] == c],
                              [r[col] for r in rows if r[0] == c])
                          for c in sorted({r[0] for r in rows})])
        body.append([t, f"{rho([r[3] for r in rows], [r[col] for r in rows]):+.2f}",
                     f"{rho([m[0] for m in means], [m[1] for m in means]):+.2f}",
                     f"{rho([m[0] for m in means if m[2]], [m[1] for m in means if m[2]]):+.2f}",
                     f"{within:+.2f}"])
    print("\n".join(md_table(["term", "ρ all pairs", "ρ condition means",
                              "ρ codec means only", "ρ within clip"], body)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
