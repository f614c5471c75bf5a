"""Training data: a folder of audio files held in memory, sampled as gain-normalised packets.

Layout: any tree of audio files soundfile can read. Files under a folder named ``dev`` form
the dev split; if there is none, a deterministic 5 % of files (by a hash of the path) is.
Everything is mixed to mono and resampled to the tier rate once, at load time.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ..codec.framing import Framing
from ..codec.gain import gain_code, gain_value

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".au", ".mp3", ".opus"}


def list_audio(root: Path) -> tuple[list[Path], list[Path]]:
    """(train, dev) audio files under ``root``, sorted."""
    files = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES
                   and p.is_file())
    dev = [p for p in files if "dev" in p.relative_to(root).parts[:-1]]
    if not dev:
        dev = [p for p in files
               if int(hashlib.md5(str(p.relative_to(root)).encode()).hexdigest(), 16) % 20 == 0]
    dev_set = set(dev)
    return [p for p in files if p not in dev_set], dev


def load_mono(path: Path, rate: int) -> np.ndarray:
    """Read a file as float32 mono at ``rate``."""
    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if sr != rate and x.size:
        x = soxr.resample(x, sr, rate, quality="HQ").astype(np.float32)
    return x


class PacketSampler:
    """Draws random packet-length segments and normalises each by its quantized gain.

    Exactly what the encoder does to a packet, so training sees the inference inputs.
    Near-silent segments are mostly skipped: they cost bits and teach little.
    """

    def __init__(self, signals: list[np.ndarray], framing: Framing, seed: int = 0) -> None:
        self.framing = framing
        self.span = framing.packet_span(framing.packet_frames)
        self.signals = [s for s in signals if s.shape[0] > self.span]
        if not self.signals:
            raise ValueError("no training file is longer than one packet")
        lengths = np.array([s.shape[0] - self.span for s in self.signals], dtype=np.float64)
        self.p = lengths / lengths.sum()
        self.rng = np.random.default_rng(seed)

    def raw_batch(self, n: int, history: int = 0) -> np.ndarray:
        """(n, history + span) raw segments: a random packet span and the samples before it
        (zeros before a file's start), skipping most near-silent packets."""
        out = np.zeros((n, history + self.span), dtype=np.float32)
        i = 0
        while i < n:
            s = self.signals[self.rng.choice(len(self.signals), p=self.p)]
            o = int(self.rng.integers(0, s.shape[0] - self.span))
            seg = s[o: o + self.span]
            if gain_code(seg) < 80 and self.rng.random() < 0.9:  # below -60 dBFS RMS
                continue
            lo = max(0, o - history)
            out[i, history - (o - lo):] = s[lo: o + self.span]
            i += 1
        return out

    def batch(self, n: int) -> np.ndarray:
        """(n, span) packets, each divided by its quantized gain, as the encoder does."""
        out = self.raw_batch(n)
        for row in out:
            row /= gain_value(gain_code(row))
        return out
