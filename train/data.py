"""Training data: a folder of audio files held in memory, sampled as gain-normalised packets.

Layout: any tree of audio files soundfile can read. Files under a folder named ``dev`` form
the dev split; if there is none, a deterministic 5 % of files (by a hash of the path) is.
Everything is resampled to the tier rate once, at load time, and mixed to mono, or (the
``coded`` stereo view) kept as channels so that a stereo packet is drawn as one of the channels
the encoder codes: L or R, or M or S of a mid/side packet with S at its real level (normalised
by M's gain, as ``codec.stereo.gain_codes`` sends it). A tier trained on mono mixes never sees
the quiet S of a mid/side packet; that is most of what stereo costs in bits.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ..codec import stereo
from ..codec.framing import Framing
from ..codec.gain import gain_code, gain_value

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".au", ".mp3", ".opus"}
STEREO_VIEWS = ("mix", "coded")
QUIET_CODE = 80     # gain code of a packet below -60 dBFS RMS: mostly skipped


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


def load_channels(path: Path, rate: int) -> np.ndarray:
    """Read a file as float32 (channels, samples) at ``rate``."""
    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    if sr != rate and x.size:
        x = soxr.resample(x, sr, rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(x.T)


def load_mono(path: Path, rate: int) -> np.ndarray:
    """Read a file as float32 mono at ``rate``."""
    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if sr != rate and x.size:
        x = soxr.resample(x, sr, rate, quality="HQ").astype(np.float32)
    return x


def load_view(path: Path, rate: int, view: str) -> np.ndarray:
    """A training file as the sampler holds it: mono (``mix``), or (2, n) for a stereo file
    in the ``coded`` view (other channel counts are coded channel by channel: each channel
    becomes its own mono signal upstream, see ``training_signals``)."""
    if view == "mix":
        return load_mono(path, rate)
    return load_channels(path, rate)


def training_signals(paths: list[Path], rate: int, view: str) -> list[np.ndarray]:
    """Every training file in ``view``: 1-D mono signals, and (2, n) stereo pairs in the
    ``coded`` view (a file of 1 or more than 2 channels gives one mono signal per channel,
    as the encoder codes such streams)."""
    if view not in STEREO_VIEWS:
        raise ValueError(f"unknown stereo view {view!r}; use {', '.join(STEREO_VIEWS)}")
    out: list[np.ndarray] = []
    for p in paths:
        x = load_view(p, rate, view)
        if x.ndim == 1 or x.shape[0] == 2:
            out.append(x)
        else:
            out.extend(np.ascontiguousarray(c) for c in x)
    return out


def coded_channel(seg: np.ndarray, pick: int, span: int, choice: str = "auto"
                  ) -> tuple[np.ndarray, int] | None:
    """Coded channel ``pick`` (0 or 1) of a stereo segment (2, n) as ``--stereo choice`` codes
    the packet in its last ``span`` samples (S carrying every layer, as in a one-layer tier),
    and the gain code it is normalised by; None where that channel is not coded (silent, or
    an S dropped under its M)."""
    mode = stereo.choose(seg[:, -span:], choice)
    coded = stereo.to_coded(seg, mode)
    own = [gain_code(c[-span:]) for c in coded]
    codes = stereo.gain_codes(own, stereo.Stereo(mode))
    if codes[pick] == stereo.SILENT:
        return None
    return coded[pick], codes[pick]


class PacketSampler:
    """Draws random packet-length segments and normalises each by its quantized gain.

    Exactly what the encoder does to a packet, so training sees the inference inputs.
    Near-silent segments are mostly skipped: they cost bits and teach little.
    """

    def __init__(self, signals: list[np.ndarray], framing: Framing, seed: int = 0,
                 stereo_choice: str = "auto") -> None:
        """``stereo_choice``: how the encoder codes stereo pairs (LPC tiers: ``lr``)."""
        self.framing = framing
        self.stereo_choice = stereo_choice
        self.span = framing.packet_span(framing.packet_frames)
        self.signals = [s for s in signals if s.shape[-1] > self.span]
        if not self.signals:
            raise ValueError("no training file is longer than one packet")
        lengths = np.array([s.shape[-1] - self.span for s in self.signals], dtype=np.float64)
        self.p = lengths / lengths.sum()
        self.rng = np.random.default_rng(seed)
        self.last_codes: np.ndarray | None = None

    def raw_batch(self, n: int, history: int = 0) -> np.ndarray:
        """(n, history + span) raw segments: a random packet span and the samples before it
        (zeros before a file's start), skipping most near-silent packets.

        Rows drawn from a stereo pair are a coded channel; ``last_codes`` then holds the gain
        code each row is normalised by (its own, except an S under its M), else None."""
        out = np.zeros((n, history + self.span), dtype=np.float32)
        codes = np.zeros(n, dtype=np.int64)
        any_pair = False
        i = 0
        while i < n:
            s = self.signals[self.rng.choice(len(self.signals), p=self.p)]
            o = int(self.rng.integers(0, s.shape[-1] - self.span))
            lo = max(0, o - history)
            if s.ndim == 2:
                got = coded_channel(s[:, lo: o + self.span], int(self.rng.integers(0, 2)),
                                    self.span, self.stereo_choice)
                if got is None:
                    continue
                seg_all, code = got
                any_pair = True
            else:
                seg_all = s[lo: o + self.span]
                code = gain_code(seg_all[-self.span:])
            if code < QUIET_CODE and self.rng.random() < 0.9:
                continue
            out[i, history - (o - lo):] = seg_all
            codes[i] = code
            i += 1
        self.last_codes = codes if any_pair else None
        return out

    def batch(self, n: int) -> np.ndarray:
        """(n, span) packets, each divided by its quantized gain, as the encoder does."""
        out = self.raw_batch(n)
        codes = self.last_codes
        for k, row in enumerate(out):
            row /= gain_value(int(codes[k]) if codes is not None else gain_code(row))
        return out
