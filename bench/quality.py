#!/usr/bin/env python3
"""Quality benchmark: every installed nwc tier against classic speech and audio codecs.

Codes the same clips with every nwc tier (through the real ``nwc`` command line,
``nwc encode`` then ``nwc decode`` as subprocesses) and with every anchor codec at each
point of its bit-rate ladder, then prints ONE Markdown table of means over the clips.

Speech (the default): 16 kHz mono clips; every 16 kHz tier at every layer prefix, and AMR-WB,
Opus, Speex-WB, Codec2, LAME MP3, LC3 (liblc3), and FFmpeg's AAC-LC, G.722 and Vorbis::

    codec | mode | nominal kbps | real kbps | PESQ-WB | STOI | ViSQOL | SI-SNR dB

followed by a verdict: every nwc rung against AMR-WB interpolated at its real bitrate in PESQ-WB
and ViSQOL (Opus beside it), and the 32 kbps rung against PESQ-WB 4.0.

Music (``--music``): the middle ``--seconds`` of each file at 44.1 kHz, stereo kept; every
44.1 kHz tier at every layer prefix (``nwc encode -l K``), and LAME MP3 (CBR and ABR, joint
stereo), Opus and FFmpeg's AAC-LC; ViSQOL in audio mode and SI-SNR, per channel, averaged::

    codec | mode | nominal kbps | real kbps | ViSQOL | SI-SNR dB

followed by a verdict: every nwc rung against MP3 interpolated at its real bitrate, and
against MP3 112 kbps. Alignment, SI-SNR and the metrics come from ``nwc.evaluation.metrics``, the
code behind ``nwc eval``, so the two agree on the same pair of files.

Usage::

    python -m bench.quality DATA_DIR [--tiers a,b] [--anchors amrwb,opus,mp3,...]
                            [--clips N] [--out-md FILE] [--out-csv FILE]
    python -m bench.quality DATA_DIR --music [--seconds S] [--anchors mp3,mp3abr,opus,aac] ...

(``python bench/quality.py ...`` runs the same.)

See bench/README.md for what each column means; bench/install.sh installs the anchors.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import io
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from nwc.evaluation import metrics

if not __package__:  # `python bench/quality.py`: import the bench package beside it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "bench"
from . import amrwb  # noqa: E402
from .common import ToolError, installed_tiers, log, md_table, pick_clips  # noqa: E402, F401

SR = 16000
MAX_LAG_S = metrics.MAX_LAG_S  # alignment search range, seconds either way
# Alignment. A clip whose normalised waveform cross-correlation peak reaches this is aligned
# at its own peak, refined to a fraction of a sample (as `nwc eval` does). Otherwise it gets
# its system's lag from the cross-correlation summed over all clips, or, if that pooled peak
# is also below this (output not waveform-coherent, e.g. Codec2 synthesises its own phase),
# the pooled lag of the amplitude envelopes. Waveform codecs here peak at 0.6-0.99 per clip,
# Codec2 at 0.04-0.13.
WAVEFORM_PEAK_MIN = metrics.WAVEFORM_PEAK_MIN
TIMEOUT_S = 900  # per subprocess

# Anchor ladders. Nominal kbps is the codec's own rate for that setting.
OPUS_KBPS = (6, 8, 12, 16, 24, 32)
# Speex wideband (CBR) quality -> nominal bit rate, from the Speex manual.
SPEEX_WB_KBPS = {0: 3.95, 2: 7.75, 4: 12.8, 6: 20.6, 8: 27.8, 10: 42.2}
SPEEX_QUALITIES = (2, 4, 6, 8)
CODEC2_MODES = {"3200": 3.2, "1600": 1.6, "700C": 0.7}
MP3_KBPS = (8, 16, 24, 32)  # LAME CBR; MPEG-2 Layer III at 16 kHz (8 kbps: MPEG-2.5, 8 kHz)
LC3_KBPS = (16, 24, 32)  # liblc3, 10 ms frames; 16 kbps is LC3's floor at 16 kHz
AAC_KBPS = (12, 16, 24, 32)  # FFmpeg's native AAC-LC encoder, ADTS stream
VORBIS_KBPS = (16, 24, 32)  # libvorbis ABR; it refuses less than ~16 kbps for 16 kHz mono
G722_KBPS = 64  # FFmpeg's G.722 encoder has only the 64 kbps mode
ALL_ANCHORS = ("amrwb", "opus", "speex", "codec2", "mp3", "lc3", "aac", "g722", "vorbis")

# Music mode (--music): 44.1 kHz, stereo kept, an excerpt from the middle of each file (game
# and library tracks open with silence or a fade-in).
MUSIC_SR = 44100
MUSIC_SECONDS = 10.0
# LAME CBR: the bar's rates, plus 160 so that the verdict can interpolate MP3 at the real rate
# of a 128 kbps rung (container overhead puts it a little above 128), and 192 / 256 so that it
# can judge the deeper rungs of a ladder (170-230 kbps) too.
MP3_MUSIC_KBPS = (32, 48, 64, 96, 112, 128, 160, 192, 256)
MP3_ABR_KBPS = (48, 64, 96, 128)
OPUS_MUSIC_KBPS = (48, 64, 96, 128)
AAC_MUSIC_KBPS = (48, 64, 96, 128)
MUSIC_ANCHORS = ("mp3", "mp3abr", "opus", "aac")
# The bar (issue 5): the 64 kbps rung reaches MP3 112's ViSQOL; every rung beats MP3 (CBR)
# at its own real bitrate.
MUSIC_BAR_RUNG_KBPS = 64.0
MP3_BAR_KBPS = 112
MP3_CODEC = "MP3 (LAME)"
# The speech ladder's bar: every rung at least matches AMR-WB at its own real bitrate in
# PESQ-WB and ViSQOL, and the 32 kbps rung reaches PESQ-WB 4.0; Opus is reported beside.
SPEECH_BAR_RUNG_KBPS = 32.0
SPEECH_BAR_PESQ = 4.0
AMRWB_CODEC = "AMR-WB"
OPUS_CODEC = "Opus"

ANCHOR_TOOLS = {
    "opus": ("opusenc", "opusdec"),
    "speex": ("speexenc", "speexdec"),
    "codec2": ("c2enc", "c2dec", "sox"),
    "mp3": ("lame",),
    "mp3abr": ("lame",),
    "lc3": ("elc3", "dlc3"),
    "aac": ("ffmpeg",),
    "g722": ("ffmpeg",),
    "vorbis": ("ffmpeg",),
}
# FFmpeg encoder each ffmpeg anchor needs (`ffmpeg -encoders`).
FFMPEG_ENCODERS = {"aac": "aac", "g722": "g722", "vorbis": "libvorbis"}

COLUMNS = (
    ("codec", "codec"),
    ("mode", "mode"),
    ("nominal_kbps", "nominal kbps"),
    ("real_kbps", "real kbps"),
    ("pesq_wb", "PESQ-WB"),
    ("stoi", "STOI"),
    ("visqol", "ViSQOL"),
    ("si_snr_db", "SI-SNR dB"),
)
# Music adds the noise-to-mask ratio (bench/nmr.py): where the noise sits against the mask.
MUSIC_COLUMNS = (*(c for c in COLUMNS if c[0] not in ("pesq_wb", "stoi")), ("nmr_db", "NMR dB"))
DIGITS = {
    "nominal_kbps": 2,
    "real_kbps": 2,
    "pesq_wb": 2,
    "stoi": 3,
    "visqol": 2,
    "si_snr_db": 1,
    "nmr_db": 1,
}


# --------------------------------------------------------------------------------------
# Audio helpers


def to_mono_16k(x: np.ndarray, sr: int) -> np.ndarray:
    """float64 mono at 16 kHz."""
    return metrics.resample(metrics.mono(x), sr, SR)


def read_audio(path: Path) -> np.ndarray:
    x, sr = sf.read(str(path), dtype="float64", always_2d=True)
    return to_mono_16k(x, sr)


def resample_channels(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """(frames, channels) float64 resampled channel by channel, as ``metrics.resample``."""
    if rate_in == rate_out:
        return x
    return np.stack([metrics.resample(x[:, c], rate_in, rate_out) for c in range(x.shape[1])],
                    axis=1)


def read_music(path: Path) -> np.ndarray:
    """(frames, channels) float64 at 44.1 kHz; stereo stays stereo (of more, the first two)."""
    x, sr = sf.read(str(path), dtype="float64", always_2d=True)
    return resample_channels(x[:, :2], sr, MUSIC_SR)


def excerpt(x: np.ndarray, frames: int) -> np.ndarray:
    """The middle ``frames`` of ``x``: all of it when ``frames`` is 0 or ``x`` is no longer."""
    if frames <= 0 or len(x) <= frames:
        return x
    start = (len(x) - frames) // 2
    return x[start:start + frames]


def as_channels(x: np.ndarray, channels: int | None = None) -> np.ndarray:
    """``x`` as (frames, channels); a mono decode of a stereo reference is used for both
    channels, a stereo decode of a mono one is mixed down."""
    x = x[:, None] if x.ndim == 1 else x
    if channels is None or x.shape[1] == channels:
        return x
    if x.shape[1] == 1:
        return np.repeat(x, channels, axis=1)
    return metrics.mono(x)[:, None]


def read_raw_s16(path: Path, sr: int) -> np.ndarray:
    x = np.fromfile(path, dtype="<i2").astype(np.float64) / 32768.0
    return to_mono_16k(x, sr)


def xcorr(ref: np.ndarray, deg: np.ndarray, max_lag: int) -> np.ndarray:
    """Normalised cross-correlation (index ``max_lag + k``: ``deg`` trails ``ref`` by ``k``)."""
    return metrics.xcorr(ref, deg, max_lag)


def envelope(x: np.ndarray) -> np.ndarray:
    """Zero-mean amplitude envelope at 16 kHz, for phase-free alignment."""
    return metrics.envelope(x, SR)


si_snr = metrics.si_snr


# --------------------------------------------------------------------------------------
# Metrics


class Visqol:
    """ViSQOL through ``nwc.evaluation.metrics`` on signals at ``rate`` (speech mode for speech,
    audio mode for music), self-tested at start-up."""

    def __init__(self, mode: str = "speech", rate: int = SR) -> None:
        self.engine: metrics.Visqol | None = None
        self.rate = rate
        self.note = ""
        try:
            engine = metrics.visqol_for(mode)
        except Exception as exc:
            self.note = f"ViSQOL column skipped: visqol-python not usable ({exc})."
            return
        try:  # proves it runs here, offline, before hours of coding
            t = np.arange(rate * 2) / rate
            x = 0.1 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
            engine(x, x + 1e-3 * np.random.default_rng(0).standard_normal(len(x)), rate)
        except Exception as exc:
            self.note = f"ViSQOL column skipped: visqol-python failed to start ({exc})."
            return
        self.engine = engine
        self.note = f"ViSQOL: visqol-python, {engine.description}; MOS-LQO 1-5."

    @property
    def api(self) -> metrics.Visqol | None:
        return self.engine

    def __call__(self, ref: np.ndarray, deg: np.ndarray) -> float:
        if self.engine is None:
            return math.nan
        return self.engine(ref, deg, self.rate)


SPEECH_METRICS = ("pesq_wb", "stoi", "visqol")
OPTIONAL_METRICS = (*SPEECH_METRICS, "nmr_db")   # measured where a profile's columns name them


def measure(ref: np.ndarray, deg: np.ndarray, visqol: Visqol | None, rate: int = SR,
            keys: Sequence[str] = SPEECH_METRICS) -> dict[str, float]:
    """SI-SNR and those of PESQ-WB, STOI, ViSQOL and NMR named in ``keys``, of aligned mono
    signals."""
    out: dict[str, float] = {}
    if "pesq_wb" in keys:
        try:
            out["pesq_wb"] = metrics.pesq_wb(ref, deg, rate)
        except Exception as exc:  # e.g. NoUtterancesError on silence
            log(f"    PESQ failed: {exc}")
            out["pesq_wb"] = math.nan
    if "stoi" in keys:
        try:
            out["stoi"] = metrics.stoi(ref, deg, rate)
        except ValueError as exc:  # too little speech left
            log(f"    STOI failed: {exc}")
            out["stoi"] = math.nan
    out["si_snr_db"] = metrics.si_snr(ref, deg)
    if "nmr_db" in keys:
        from .nmr import noise_to_mask_db  # torch: music mode only
        out["nmr_db"] = noise_to_mask_db(ref, deg, rate)
    if "visqol" in keys and visqol is not None and visqol.api is not None:
        try:
            out["visqol"] = visqol(ref, deg)
        except Exception as exc:
            log(f"    ViSQOL failed: {exc}")
            out["visqol"] = math.nan
    return out


SILENT_RMS = 1e-5  # a reference channel this quiet (-100 dBFS) has nothing to score


def measure_channels(ref: np.ndarray, dec: np.ndarray, lag: float, visqol: Visqol | None,
                     rate: int = SR, keys: Sequence[str] = SPEECH_METRICS) -> dict[str, float]:
    """Align every channel of ``dec`` to ``ref`` (both (frames, channels)) at the one ``lag``
    (codecs delay both channels alike), measure each, and average each metric over channels.

    A channel the reference leaves silent (a sound effect panned hard to one side) is left
    out: SI-SNR is undefined there and ViSQOL would score noise against nothing.
    """
    chans = list(range(ref.shape[1]))
    if len(chans) > 1:
        loud = [c for c in chans if np.sqrt(np.mean(ref[:, c] ** 2)) > SILENT_RMS]
        chans = loud or chans
    per = []
    for c in chans:
        ref_t, deg_t = metrics.align_at(ref[:, c], dec[:, c], lag)  # as `nwc eval` aligns
        per.append(measure(ref_t, deg_t, visqol, rate, keys))
    out = {}
    for k in per[0]:
        vals = [p[k] for p in per if not math.isnan(p[k])]
        out[k] = float(np.mean(vals)) if vals else math.nan
    return out


# --------------------------------------------------------------------------------------
# Systems under test. A system's ``plan(ref_wav, ref_pcm16, work)`` lays out how it codes one
# clip as separate encode and decode steps (so bench/speed.py can time them apart);
# ``System.run`` executes them and returns (encoded bytes, decoded signal).


@dataclass
class Step:
    """One coding step: a command line, or for a codec driven in this process a Python call
    (``fn``) with ``argv`` its equivalent command line (to time it as a process)."""

    argv: list[str]
    fn: Callable[[], None] | None = None

    def __call__(self) -> None:
        if self.fn is not None:
            self.fn()
        else:
            sh(self.argv)


@dataclass
class Coding:
    """How a system codes one clip: encode steps, decode steps, the coded file (whose size is
    the coded size) and a reader of the decoded signal (float64: mono at 16 kHz for speech,
    (frames, channels) at 44.1 kHz for music)."""

    encode: list[Step]
    decode: list[Step]
    coded: Path
    read: Callable[[], np.ndarray]


PlanFn = Callable[[Path, np.ndarray, Path], Coding]


def steps(*argvs: list[str]) -> list[Step]:
    return [Step(a) for a in argvs]


@dataclass
class System:
    codec: str
    mode: str
    nominal_kbps: float
    plan: PlanFn
    rows: list[dict[str, float]] = field(default_factory=list)
    failures: int = 0
    # pass 1 results, per clip index: (encoded bytes, decoded .npy path, own lag, own peak)
    coded: dict[int, tuple[int, Path, int, float]] = field(default_factory=dict)
    xc_wave: np.ndarray | None = None
    xc_env: np.ndarray | None = None
    lag: int = 0
    align: str = "waveform"
    peak: float = math.nan
    lags: list[float] = field(default_factory=list)  # delay used per measured clip
    how_per_clip: list[str] = field(default_factory=list)  # how each lag was chosen
    tier: str = ""  # nwc rungs: the tier, and how many of its layers are coded
    layers: int = 0

    @property
    def label(self) -> str:
        return f"{self.codec} {self.mode}"

    def run(self, ref_wav: Path, pcm: np.ndarray, work: Path) -> tuple[int, np.ndarray]:
        """Code one clip: every encode step, then every decode step."""
        c = self.plan(ref_wav, pcm, work)
        for step in (*c.encode, *c.decode):
            step()
        return c.coded.stat().st_size, c.read()

    def add_xcorr(self, wave: np.ndarray, env: np.ndarray) -> None:
        self.xc_wave = wave if self.xc_wave is None else self.xc_wave + wave
        self.xc_env = env if self.xc_env is None else self.xc_env + env

    def choose_lag(self, max_lag: int) -> None:
        """Fallback lag of the system: peak of the cross-correlation summed over clips."""
        if self.xc_wave is None or self.xc_env is None or not self.coded:
            return
        wave = self.xc_wave / len(self.coded)
        i = int(np.argmax(wave))
        self.peak = float(wave[i])
        if self.peak >= WAVEFORM_PEAK_MIN:
            self.lag, self.align = i - max_lag, "waveform"
        else:
            self.lag, self.align = int(np.argmax(self.xc_env)) - max_lag, "envelope"


def sh(cmd: list[str]) -> None:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{shlex.join(cmd)} exited {p.returncode}: {' | '.join(tail)}")


# bench/amrwb.py as a command: what an AMR-WB step costs as a process (bench/speed.py).
AMRWB_CLI = [sys.executable, str(Path(amrwb.__file__).resolve())]


def amrwb_system(mode: int) -> System:
    def plan(ref_wav: Path, pcm: np.ndarray, work: Path) -> Coding:
        enc, dec = work / "out.amr", work / "out.wav"  # out.amr: the file whose size counts
        out: dict[str, np.ndarray] = {}

        def encode() -> None:
            enc.write_bytes(amrwb.encode(pcm, mode))

        def decode() -> None:
            out["pcm"] = amrwb.decode(enc.read_bytes())

        return Coding(
            [Step([*AMRWB_CLI, "encode", str(ref_wav), str(enc), "--mode", str(mode)], encode)],
            [Step([*AMRWB_CLI, "decode", str(enc), str(dec)], decode)],
            enc, lambda: out["pcm"].astype(np.float64) / 32768.0)

    return System(AMRWB_CODEC, f"mode {mode}", amrwb.MODE_KBPS[mode], plan)


def opus_system(kbps: int, rate: int = SR,
                reader: Callable[[Path], np.ndarray] | None = None) -> System:
    """Opus at ``kbps``, decoded at ``rate`` (Opus itself codes at 48 kHz: opusenc resamples
    the input, opusdec resamples back)."""
    read = reader or read_audio

    def plan(ref_wav: Path, pcm: np.ndarray, work: Path) -> Coding:
        enc, dec = work / "out.opus", work / "out.wav"
        return Coding(steps(["opusenc", "--quiet", "--bitrate", str(kbps), str(ref_wav), str(enc)]),
                      steps(["opusdec", "--quiet", "--rate", str(rate), str(enc), str(dec)]),
                      enc, lambda: read(dec))

    return System(OPUS_CODEC, f"VBR {kbps}k", float(kbps), plan)


def speex_system(q: int) -> System:
    def plan(ref_wav: Path, pcm: np.ndarray, work: Path) -> Coding:
        enc, dec = work / "out.spx", work / "out.wav"
        return Coding(steps(["speexenc", "-w", "--quality", str(q), str(ref_wav), str(enc)]),
                      steps(["speexdec", str(enc), str(dec)]), enc, lambda: read_audio(dec))

    return System("Speex-WB", f"q{q}", SPEEX_WB_KBPS[q], plan)


def codec2_system(mode: str) -> System:
    # Codec2 codes 8 kHz audio: the encode step starts with sox's resampling.
    def plan(ref_wav: Path, pcm: np.ndarray, work: Path) -> Coding:
        nb, enc, dec = work / "in8k.raw", work / "out.c2", work / "out8k.raw"
        raw = ["-t", "raw", "-e", "signed-integer", "-b", "16", "-c", "1"]
        return Coding(steps(["sox", "-D", str(ref_wav), *raw, str(nb), "rate", "-v", "8000"],
                            ["c2enc", mode, str(nb), str(enc)]),  # .c2: file with a 7-byte header
                      steps(["c2dec", mode, str(enc), str(dec)]),
                      enc, lambda: read_raw_s16(dec, 8000))

    return System("Codec2 (8 kHz)", mode, CODEC2_MODES[mode], plan)


def mp3_system(kbps: int) -> System:
    # `lame --decode` keeps the encoder and decoder delays: its output trails the input by
    # 576 samples at the coded rate (16 kHz; 8 kHz at 8 kbps, i.e. 1152 at 16 kHz), which
    # alignment removes like any other codec delay.
    def plan(ref_wav: Path, pcm: np.ndarray, work: Path) -> Coding:
        enc, dec = work / "out.mp3", work / "out.wav"
        return Coding(steps(["lame", "--quiet", "--cbr", "-b", str(kbps), str(ref_wav), str(enc)]),
                      steps(["lame", "--quiet", "--decode", str(enc), str(dec)]),
                      enc, lambda: read_audio(dec))

    return System("MP3 (LAME)", f"CBR {kbps}k", float(kbps), plan)


def lc3_system(kbps: int) -> System:
    # liblc3's tools store an 18-byte header and a 2-byte length before every 10 ms frame
    # (1.6 kbps), counted in the real rate like every other container.
    def plan(ref_wav: Path, pcm: np.ndarray, work: Path) -> Coding:
        enc, dec = work / "out.lc3", work / "out.wav"
        return Coding(steps(["elc3", "-b", str(kbps * 1000), "-m", "10", str(ref_wav), str(enc)]),
                      steps(["dlc3", str(enc), str(dec)]), enc, lambda: read_audio(dec))

    return System("LC3", f"10 ms {kbps}k", float(kbps), plan)


FFMPEG = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]


def ffmpeg_system(codec: str, mode: str, kbps: float, enc_args: list[str], suffix: str,
                  in_args: tuple[str, ...] = (),
                  read: Callable[[Path], np.ndarray] = read_audio) -> System:
    """An anchor coded and decoded by ffmpeg; the decoded WAV is 16-bit at the codec's rate."""

    def plan(ref_wav: Path, pcm: np.ndarray, work: Path) -> Coding:
        enc, dec = work / f"out.{suffix}", work / "out.wav"
        return Coding(steps([*FFMPEG, "-i", str(ref_wav), *enc_args, str(enc)]),
                      steps([*FFMPEG, *in_args, "-i", str(enc), "-c:a", "pcm_s16le", str(dec)]),
                      enc, lambda: read(dec))

    return System(codec, mode, kbps, plan)


def aac_system(kbps: int) -> System:
    # ADTS (7-byte header a 1024-sample frame): the streaming form, like .nwc packets. The
    # decoder keeps AAC's 1024-sample priming; alignment removes it.
    return ffmpeg_system("AAC-LC (FFmpeg)", f"CBR {kbps}k", float(kbps),
                         ["-c:a", "aac", "-b:a", f"{kbps}k", "-f", "adts"], "aac")


def g722_system() -> System:
    return ffmpeg_system("G.722 (FFmpeg)", f"{G722_KBPS}k", float(G722_KBPS),
                         ["-c:a", "g722", "-f", "g722"], "g722", ("-f", "g722"))


def vorbis_system(kbps: int) -> System:
    # Ogg Vorbis carries ~4 kB of setup headers: about 4 kbps on a 7-second clip.
    return ffmpeg_system("Vorbis (FFmpeg)", f"ABR {kbps}k", float(kbps),
                         ["-c:a", "libvorbis", "-b:a", f"{kbps}k"], "ogg")


# Each anchor's system factory and the settings of its bit-rate ladder.
Ladders = dict[str, tuple[Callable[[Any], System], Sequence[Any]]]
LADDERS: Ladders = {
    "amrwb": (amrwb_system, range(len(amrwb.MODE_KBPS))),
    "opus": (opus_system, OPUS_KBPS),
    "speex": (speex_system, SPEEX_QUALITIES),
    "codec2": (codec2_system, tuple(CODEC2_MODES)),
    "mp3": (mp3_system, MP3_KBPS),
    "lc3": (lc3_system, LC3_KBPS),
    "aac": (aac_system, AAC_KBPS),
    "g722": (lambda _: g722_system(), (None,)),
    "vorbis": (vorbis_system, VORBIS_KBPS),
}


# Music mode's anchors: 44.1 kHz stereo in, decoded back to 44.1 kHz stereo.


def mp3_music_system(kbps: int, abr: bool = False) -> System:
    # Joint stereo. LAME picks its own coded rate and low-pass for the bit rate, as a user's
    # `lame -b K` does (from 44.1 kHz: 16 kHz at 32 kbps, 22.05 at 48, 24 at 64, 44.1 from
    # 80 up); the decode is resampled back to 44.1 kHz and its delay removed by alignment.
    how = ["--abr", str(kbps)] if abr else ["--cbr", "-b", str(kbps)]

    def plan(ref_wav: Path, pcm: np.ndarray, work: Path) -> Coding:
        enc, dec = work / "out.mp3", work / "out.wav"
        return Coding(steps(["lame", "--quiet", *how, "-m", "j", str(ref_wav), str(enc)]),
                      steps(["lame", "--quiet", "--decode", str(enc), str(dec)]),
                      enc, lambda: read_music(dec))

    return System(MP3_CODEC, f"{'ABR' if abr else 'CBR'} {kbps}k", float(kbps), plan)


def opus_music_system(kbps: int) -> System:
    return opus_system(kbps, MUSIC_SR, read_music)


def aac_music_system(kbps: int) -> System:
    return ffmpeg_system("AAC-LC (FFmpeg)", f"CBR {kbps}k", float(kbps),
                         ["-c:a", "aac", "-b:a", f"{kbps}k", "-f", "adts"], "aac",
                         read=read_music)


MUSIC_LADDERS: Ladders = {
    "mp3": (mp3_music_system, MP3_MUSIC_KBPS),
    "mp3abr": (functools.partial(mp3_music_system, abr=True), MP3_ABR_KBPS),
    "opus": (opus_music_system, OPUS_MUSIC_KBPS),
    "aac": (aac_music_system, AAC_MUSIC_KBPS),
}


def anchor_systems(anchor: str, ladders: Ladders = LADDERS) -> list[System]:
    """Every rung of ``anchor``'s ladder (speech ladders unless told), in ladder order."""
    make, settings = ladders[anchor]
    return [make(s) for s in settings]


@dataclass(frozen=True)
class Reference:
    """An anchor ladder that a verdict reads at every nwc rung's real kbps: each metric of
    ``keys``, linear in real kbps between its measured rungs, lands in the nwc row as
    ``column(key)`` (by ``add_references``)."""

    name: str                        # column prefix
    codec: str                       # its rows' codec
    keys: tuple[str, ...]
    modes: str = ""                  # only rows whose mode starts with this (MP3: CBR, not ABR)

    def rows(self, rows: list[dict]) -> list[dict]:
        return [r for r in rows
                if r["codec"] == self.codec and str(r["mode"]).startswith(self.modes)]

    def column(self, key: str) -> str:
        return f"{self.name}_{key}_same_kbps"


MP3_REF = Reference("mp3", MP3_CODEC, ("visqol", "si_snr_db"), "CBR")
AMRWB_REF = Reference("amrwb", AMRWB_CODEC, ("pesq_wb", "visqol"))
OPUS_REF = Reference("opus", OPUS_CODEC, ("pesq_wb",))


@dataclass(frozen=True)
class Profile:
    """What a run codes and measures: speech or music."""

    name: str
    rate: int                        # every reference and decoded signal is at this rate
    visqol_mode: str                 # metrics.Visqol mode
    columns: tuple[tuple[str, str], ...]
    anchors: tuple[str, ...]         # --anchors choices (and default), in table order
    ladders: Ladders
    read: Callable[[Path], np.ndarray]  # a clip file as float64 at ``rate``
    seconds: float                   # default excerpt length (0 = whole clips)
    references: tuple[Reference, ...]  # what the verdict compares nwc rungs with

    @property
    def keys(self) -> tuple[str, ...]:
        """The metrics (beyond SI-SNR) this profile measures."""
        return tuple(k for k, _ in self.columns if k in OPTIONAL_METRICS)

    @property
    def extra_keys(self) -> list[str]:
        """CSV columns beyond the table's: an nwc row's tier and prefix, and the references
        at its real kbps."""
        return ["tier", "layers", *(ref.column(k) for ref in self.references for k in ref.keys)]


SPEECH = Profile("speech", SR, "speech", COLUMNS, ALL_ANCHORS, LADDERS, read_audio, 0.0,
                 (AMRWB_REF, OPUS_REF))
MUSIC = Profile("music", MUSIC_SR, "audio", MUSIC_COLUMNS, MUSIC_ANCHORS, MUSIC_LADDERS,
                read_music, MUSIC_SECONDS, (MP3_REF,))


def parse_ffmpeg_encoders(text: str) -> set[str]:
    """Encoder names from `ffmpeg -encoders` (the rows after the ``------`` line)."""
    names: set[str] = set()
    started = False
    for line in text.splitlines():
        parts = line.split()
        if not started:
            started = bool(parts) and set(parts[0]) == {"-"}
            continue
        if len(parts) >= 2 and len(parts[0]) == 6:
            names.add(parts[1])
    return names


@functools.lru_cache(maxsize=1)  # one `ffmpeg -encoders` per run, not one per anchor
def ffmpeg_encoders() -> frozenset[str]:
    try:
        p = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True,
                           text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(parse_ffmpeg_encoders(p.stdout) if p.returncode == 0 else ())


def anchor_unavailable(anchor: str) -> str | None:
    """Why ``anchor`` cannot run on this machine (a note for the table), or None."""
    if anchor == "amrwb":
        if amrwb.available():
            return None
        return ("AMR-WB skipped: libvo-amrwbenc.so.0 / libopencore-amrwb.so.0 "
                "not loadable (run bench/install.sh).")
    missing = [t for t in ANCHOR_TOOLS[anchor] if shutil.which(t) is None]
    if anchor in FFMPEG_ENCODERS and not missing:
        if FFMPEG_ENCODERS[anchor] not in ffmpeg_encoders():
            missing = [f"ffmpeg encoder {FFMPEG_ENCODERS[anchor]}"]
    if missing:
        return f"{anchor} skipped: {', '.join(missing)} not found (run bench/install.sh)."
    return None


def tier_rungs(tier: dict) -> list[float]:
    """Nominal kbps of each layer prefix (1..layers) of a tier from ``nwc tiers --json``.

    The training targets (``target_layer_kbps``) where recorded; else, for the full stream,
    the tier's ``target_kbps`` (as speech mode's nominal); else the measured dev kbps of that
    prefix.
    """
    listed = [m for m in tier.get("layers") or [] if isinstance(m, dict)]
    n = int(tier.get("stages") or len(listed) or 1)
    targets = tier.get("target_layer_kbps") or []
    out = []
    for k in range(n):
        v = targets[k] if k < len(targets) else None
        if v is None and k == n - 1:
            v = tier.get("target_kbps")
        if v is None and len(listed) == n:
            v = listed[k].get("kbps")
        if v is None and k == n - 1:
            v = tier.get("kbps")
        out.append(float(v) if v is not None else math.nan)
    return out


def nwc_systems(nwc: list[str], tier: dict, profile: Profile = SPEECH,
                stereo: str = "") -> list[System]:
    """One system per layer prefix of a tier (``nwc encode --layers K``), decoded at the
    profile's rate and read as its clips are; mode ``NAME LK`` for a layered tier, ``NAME``
    for a one-layer one. ``stereo`` (auto, ms, lr) is passed as ``--stereo`` and named in
    the mode; empty leaves the encoder's default."""
    name = str(tier["name"])
    rungs = tier_rungs(tier)
    rate, read = str(profile.rate), profile.read
    extra = ["--stereo", stereo] if stereo else []
    systems = []
    for k, nominal in enumerate(rungs, 1):

        def plan(ref_wav: Path, pcm: np.ndarray, work: Path, k: int = k) -> Coding:
            enc, dec = work / "out.nwc", work / "out.wav"
            return Coding(
                steps([*nwc, "encode", str(ref_wav), str(enc), "--tier", name,
                       "--layers", str(k), *extra, "-f", "-q"]),
                steps([*nwc, "decode", str(enc), str(dec), "--rate", rate, "-f", "-q"]),
                enc, lambda: read(dec))

        mode = name if len(rungs) == 1 else f"{name} L{k}"
        if stereo:
            mode += f" {stereo.upper() if stereo != 'auto' else 'auto'}"
        systems.append(System("nwc", mode, nominal, plan, tier=name, layers=k))
    return systems


def find_nwc(explicit: str | None) -> list[str] | None:
    if explicit:
        return shlex.split(explicit)
    beside = Path(sys.executable).parent / "nwc"
    if beside.exists():
        return [str(beside)]
    on_path = shutil.which("nwc")
    if on_path:
        return [on_path]
    return None


def nwc_tiers(nwc: list[str] | None, notes: list[str]) -> list[dict]:
    """The installed tiers, or none with a note saying why."""
    if nwc is None:
        notes.append("nwc: command not found, no tier benchmarked.")
        return []
    try:
        tiers = installed_tiers(nwc, timeout=TIMEOUT_S)
    except ToolError as exc:
        notes.append(f"nwc: {exc}; no tier benchmarked.")
        return []
    if not tiers:
        notes.append("nwc: no tier installed (`nwc tiers` is empty); table has anchors only.")
    return tiers


def select_tiers(tiers: list[dict], spec: str, profile: Profile, notes: list[str]) -> list[dict]:
    """The tiers of ``nwc tiers --json`` a run codes: those ``spec`` names (comma-separated;
    empty = all), at the profile's rate, by nominal kbps; what is left out gets a note."""
    if spec.strip():
        wanted = [t.strip() for t in spec.split(",") if t.strip()]
        by_name = {str(t["name"]): t for t in tiers}
        missing = [w for w in wanted if w not in by_name]
        if missing and tiers:
            notes.append(f"nwc: tier(s) not installed, skipped: {', '.join(missing)}.")
        tiers = [by_name[w] for w in wanted if w in by_name]
    tiers = sorted(tiers, key=lambda t: (t.get("target_kbps") or t.get("kbps") or 0,
                                         str(t["name"])))
    # A tier codes at its own rate: a 16 kHz speech tier would only band-limit music to 8 kHz,
    # and a 44.1 kHz music tier would spend its bits on speech's empty band above 8 kHz, then
    # be resampled back; neither is the comparison the profile's anchors and verdict make.
    khz = f"{profile.rate / 1000:g} kHz"
    other = [str(t["name"]) for t in tiers if t.get("sample_rate") != profile.rate]
    if other:
        notes.append(f"nwc: not {khz}, skipped in {profile.name} mode: {', '.join(other)}.")
        tiers = [t for t in tiers if t.get("sample_rate") == profile.rate]
        if not tiers:
            notes.append(f"nwc: no {khz} tier installed; table has anchors only.")
    return tiers


def build_systems(args: argparse.Namespace, notes: list[str],
                  profile: Profile = SPEECH) -> list[System]:
    systems: list[System] = []

    # nwc tiers
    if args.tiers.strip().lower() != "none":
        nwc = find_nwc(args.nwc)
        tiers = select_tiers(nwc_tiers(nwc, notes), args.tiers, profile, notes)
        if nwc is not None:
            spec = getattr(args, "stereo", "") or ""
            modes = [m.strip() for m in spec.split(",") if m.strip()] or [""]
            bad = [m for m in modes if m and m not in ("auto", "ms", "lr")]
            if bad:
                raise SystemExit(f"unknown --stereo mode(s) {', '.join(bad)}; use auto, ms, lr")
            for t in tiers:
                for m in modes:
                    systems += nwc_systems(nwc, t, profile, m)

    # anchors
    spec = profile.anchors if args.anchors is None else args.anchors.split(",")
    anchors = [a.strip().lower() for a in spec if a.strip()]
    anchors = [a for a in anchors if a != "none"]
    for a in anchors:
        if a not in profile.anchors:
            raise SystemExit(f"unknown {profile.name} anchor {a!r}; choose from "
                             f"{', '.join(profile.anchors)}")
        why = anchor_unavailable(a)
        if why:
            notes.append(why)
            continue
        systems += anchor_systems(a, profile.ladders)
    return systems


# --------------------------------------------------------------------------------------
# Output


def fmt(key: str, v: object) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        return f"{v:.{DIGITS.get(key, 3)}f}"
    return str(v)


def markdown(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    head = "| " + " | ".join(h for _, h in columns) + " |"
    align_row = "|" + "|".join(":---" if k in ("codec", "mode") else "---:" for k, _ in columns)
    lines = [head, align_row + "|"]
    for r in rows:
        lines.append("| " + " | ".join(fmt(k, r.get(k, math.nan)) for k, _ in columns) + " |")
    return "\n".join(lines)


def lag_span(lags: list[float]) -> str:
    lo, hi = (f"{round(v, 1) + 0.0:.1f}" for v in (min(lags), max(lags)))  # no "-0.0"
    return lo if lo == hi else f"{lo}..{hi}"


def alignment_note(systems: list[System], profile: Profile = SPEECH) -> str:
    """Lags used per codec, e.g. 'AMR-WB 90..95; Codec2 274..524 (22 of 24 pooled)'."""
    by_codec: dict[str, list[System]] = {}
    for s in systems:
        if s.lags:
            by_codec.setdefault(s.codec, []).append(s)
    parts = []
    for codec, group in by_codec.items():
        text = f"{codec} {lag_span([lag for s in group for lag in s.lags])}"
        hows = [how for s in group for how in s.how_per_clip]
        pooled = {
            h.removeprefix("pooled "): hows.count(h) for h in sorted(set(hows)) if h != "clip"
        }
        if pooled:
            text += (
                " ("
                + ", ".join(
                    f"{n} of {len(hows)} clip outputs at the pooled {kind} peak"
                    for kind, n in pooled.items()
                )
                + ")"
            )
        parts.append(text)
    stereo = (
        "" if profile is SPEECH
        else ", found on the mid (L+R)/2 and applied to every channel (codecs delay both alike)"
    )
    return (
        f"Alignment (`nwc.evaluation.metrics`, as `nwc eval`): lag in samples at "
        f"{profile.rate / 1000:g} kHz (output trailing input) at the peak of the clip's "
        "normalised waveform cross-correlation with "
        "the reference, refined to a fraction of a sample; where that peak "
        f"is below {WAVEFORM_PEAK_MIN}, the integer peak of the system's cross-correlation "
        "summed over all clips (of amplitude envelopes if that waveform peak is also below it)"
        f"{stereo}; both signals are then trimmed to their common span. "
        "Lags used: " + "; ".join(parts) + "."
    )


def summarise(s: System, n_clips: int) -> dict:
    row: dict = {
        "codec": s.codec,
        "mode": s.mode,
        "nominal_kbps": s.nominal_kbps,
        "align": "/".join(sorted(set(s.how_per_clip))),
        "lag_min": min(s.lags) if s.lags else "",
        "lag_max": max(s.lags) if s.lags else "",
        "pooled_peak": s.peak,
        "tier": s.tier,
        "layers": s.layers or "",
    }
    keys = ("real_kbps", "pesq_wb", "stoi", "visqol", "si_snr_db", "nmr_db",
            "lag_samples")
    for k in keys:
        vals = np.array([r[k] for r in s.rows if k in r], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        row[k] = float(vals.mean()) if len(vals) else math.nan
    row["clips_ok"] = len(s.rows)
    row["clips"] = n_clips
    return row


# --------------------------------------------------------------------------------------
# Verdicts: an issue's bar read off the table. Music (issue 5): against MP3 CBR; speech (the
# layered ladder): against AMR-WB, with Opus beside it.


def interpolate(points: Sequence[tuple[float, float]], x: float) -> float:
    """``y`` at ``x``, linear between the nearest point at or below ``x`` and the nearest at or
    above it; NaN outside the points' span (no extrapolation)."""
    pts = sorted((a, b) for a, b in points if math.isfinite(a) and math.isfinite(b))
    below = [q for q in pts if q[0] <= x]
    above = [q for q in pts if q[0] >= x]
    if not below or not above:
        return math.nan
    (x0, y0), (x1, y1) = below[-1], above[0]
    return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def add_references(rows: list[dict], references: Sequence[Reference]) -> None:
    """Give every nwc row each reference's metrics interpolated at the row's real kbps."""
    for ref in references:
        ref_rows = ref.rows(rows)
        for key in ref.keys:
            pts = [(r["real_kbps"], r.get(key, math.nan)) for r in ref_rows]
            for r in rows:
                if r["codec"] == "nwc":
                    r[ref.column(key)] = interpolate(pts, r["real_kbps"])


def beats(a: float, b: float, or_equal: bool = False) -> str:
    """'yes' if ``a`` > ``b`` (or ≥, with ``or_equal``), else 'no'; 'n/a' if either is NaN."""
    if math.isnan(a) or math.isnan(b):
        return "n/a"
    return "yes" if a > b or (or_equal and a == b) else "no"


def delta(a: float, b: float) -> str:
    return "n/a" if math.isnan(a - b) else f"{a - b:+.2f}"


def every(answers: Sequence[str], unknown: str = "n/a") -> str:
    """Conjunction of yes/no/n/a answers: 'no' if any is no, 'yes' if all are yes, else
    ``unknown`` (a missing measurement neither passes nor fails a bar)."""
    if "no" in answers:
        return "no"
    return "yes" if all(a == "yes" for a in answers) else unknown


def tally(group: list[dict], answers: list[str]) -> str:
    """'K of N (not: `mode` answer, ...): **conjunction**' of one answer per rung."""
    lost = [f"`{r['mode']}` {a}" for r, a in zip(group, answers, strict=True) if a != "yes"]
    return (f"{answers.count('yes')} of {len(group)}"
            + (f" (not: {', '.join(lost)})" if lost else "") + f": **{every(answers)}**")


def by_tier(nwc_rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in nwc_rows:
        out.setdefault(str(r.get("tier") or r["mode"]), []).append(r)
    return out


def rungs_at(rows: list[dict], kbps: float) -> list[dict]:
    """The rows whose nominal rate is ``kbps`` (within half a kbps)."""
    return [r for r in rows if abs(r["nominal_kbps"] - kbps) < 0.5]


def kbps_span(rows: list[dict]) -> str:
    """'LO-HI kbps' of the rows' real rates: where a reference can be interpolated."""
    reals = [r["real_kbps"] for r in rows if math.isfinite(r["real_kbps"])]
    return f"{min(reals):.1f}-{max(reals):.1f} kbps" if reals else "none"


def verdict(rows: list[dict]) -> str:
    """Markdown: every nwc rung against MP3 CBR at its own real kbps and against MP3 CBR 112k
    (ViSQOL decides; SI-SNR is shown beside it). Needs ``add_references`` first."""
    out = ["## Verdict", ""]
    nwc_rows = [r for r in rows if r["codec"] == "nwc"]
    mp3 = MP3_REF.rows(rows)
    if not nwc_rows or not mp3:
        return "\n".join([*out, "No verdict: it needs nwc rungs and LAME MP3 CBR in the table."])
    if all(math.isnan(r.get("visqol", math.nan)) for r in rows):
        return "\n".join([*out, "No verdict: ViSQOL was not measured."])
    bar = next((r for r in mp3 if r["mode"] == f"CBR {MP3_BAR_KBPS}k"), None)
    bar_v = bar["visqol"] if bar else math.nan
    out.append(
        "MP3 = LAME CBR, joint stereo. *MP3 at that kbps*: linear in real kbps between the two "
        "MP3 CBR points around the rung's real kbps (n/a outside the measured "
        f"{kbps_span(mp3)}). "
        + (f"MP3 CBR {MP3_BAR_KBPS}k: real {bar['real_kbps']:.2f} kbps, ViSQOL "
           f"{fmt('visqol', bar_v)}, SI-SNR {fmt('si_snr_db', bar['si_snr_db'])} dB."
           if bar else f"MP3 CBR {MP3_BAR_KBPS}k is not in the table.")
    )
    out.append("")
    head = ["nwc", "nominal kbps", "real kbps", "ViSQOL", "MP3 ViSQOL at that kbps",
            "Δ ViSQOL", "beats MP3", f"≥ MP3 {MP3_BAR_KBPS}k", "SI-SNR dB",
            "MP3 SI-SNR at that kbps"]
    body = []
    for r in nwc_rows:
        v, m = r.get("visqol", math.nan), r[MP3_REF.column("visqol")]
        body.append([
            str(r["mode"]), fmt("nominal_kbps", r["nominal_kbps"]),
            fmt("real_kbps", r["real_kbps"]), fmt("visqol", v), fmt("visqol", m), delta(v, m),
            beats(v, m), beats(v, bar_v, or_equal=True),
            fmt("si_snr_db", r["si_snr_db"]), fmt("si_snr_db", r[MP3_REF.column("si_snr_db")]),
        ])
    out += [*md_table(head, body), ""]
    for tier, group in by_tier(nwc_rows).items():
        found = rungs_at(group, MUSIC_BAR_RUNG_KBPS)
        if not found:
            first = f"no {MUSIC_BAR_RUNG_KBPS:g} kbps rung"
            reached = "n/a"
        else:
            rung = found[0]
            v = rung.get("visqol", math.nan)
            reached = beats(v, bar_v, or_equal=True)
            first = (f"{MUSIC_BAR_RUNG_KBPS:g} kbps rung `{rung['mode']}` "
                     f"({rung['real_kbps']:.1f} kbps real): ViSQOL {fmt('visqol', v)} vs MP3 "
                     f"{MP3_BAR_KBPS}k {fmt('visqol', bar_v)}, reaches it: **{reached}**")
        won = [beats(r.get("visqol", math.nan), r[MP3_REF.column("visqol")]) for r in group]
        met = every([reached, every(won)], "undecided")
        out.append(f"- **{tier}**: {first}; rungs beating MP3 at their own real kbps: "
                   f"{tally(group, won)}. Bar met: **{met}**.")
    return "\n".join(out)


def speech_verdict(rows: list[dict]) -> str:
    """Markdown: every nwc rung against AMR-WB at its own real kbps in PESQ-WB and ViSQOL (it
    must at least match it), Opus's PESQ-WB there beside it; per tier, how many rungs match;
    and the 32 kbps rung against PESQ-WB 4.0. Needs ``add_references`` first."""
    out = ["## Verdict", ""]
    nwc_rows = [r for r in rows if r["codec"] == "nwc"]
    amr = AMRWB_REF.rows(rows)
    if not nwc_rows or not amr:
        return "\n".join([*out, "No verdict: it needs nwc rungs and AMR-WB in the table."])
    keys = (("pesq_wb", "PESQ-WB"), ("visqol", "ViSQOL"))
    unmeasured = [label for key, label in keys
                  if all(math.isnan(r.get(key, math.nan)) for r in rows)]
    out.append(
        "*AMR-WB (Opus) at that kbps*: linear in real kbps between the two points of its ladder "
        "around the rung's real kbps, n/a outside the measured span (AMR-WB "
        f"{kbps_span(amr)}, Opus {kbps_span(OPUS_REF.rows(rows))}); *≥ AMR-WB*: the rung at "
        "least matches it there. The bar: every rung ≥ AMR-WB in PESQ-WB and ViSQOL, and the "
        f"{SPEECH_BAR_RUNG_KBPS:g} kbps rung at PESQ-WB ≥ {SPEECH_BAR_PESQ:.1f}."
        + "".join(f" {label} was not measured: its columns are n/a." for label in unmeasured)
    )
    out.append("")
    head = ["nwc", "nominal kbps", "real kbps"]
    for _, label in keys:
        head += [label, f"AMR-WB {label} at that kbps", f"Δ {label}", f"{label} ≥ AMR-WB"]
    head.append("Opus PESQ-WB at that kbps")
    body = []
    for r in nwc_rows:
        cells = [str(r["mode"]), fmt("nominal_kbps", r["nominal_kbps"]),
                 fmt("real_kbps", r["real_kbps"])]
        for key, _ in keys:
            v, a = r.get(key, math.nan), r[AMRWB_REF.column(key)]
            cells += [fmt(key, v), fmt(key, a), delta(v, a), beats(v, a, or_equal=True)]
        cells.append(fmt("pesq_wb", r[OPUS_REF.column("pesq_wb")]))
        body.append(cells)
    out += [*md_table(head, body), ""]
    for tier, group in by_tier(nwc_rows).items():
        parts, answers = [], []
        for key, label in keys:
            won = [beats(r.get(key, math.nan), r[AMRWB_REF.column(key)], or_equal=True)
                   for r in group]
            parts.append(f"{label} {tally(group, won)}")
            answers.append(every(won))
        out.append(f"- **{tier}**: rungs at least matching AMR-WB at their own real kbps: "
                   f"{'; '.join(parts)}; in both: **{every(answers)}**.")
    rung_name = f"{SPEECH_BAR_RUNG_KBPS:g} kbps rung"
    top = rungs_at(nwc_rows, SPEECH_BAR_RUNG_KBPS)
    if not top:
        out.append(f"- **{rung_name}**: none (no nwc rung has a nominal "
                   f"{SPEECH_BAR_RUNG_KBPS:g} kbps), so PESQ-WB ≥ {SPEECH_BAR_PESQ:.1f} is "
                   "untested.")
    for r in top:
        v = r.get("pesq_wb", math.nan)
        out.append(f"- **{rung_name}** `{r['mode']}` ({r['real_kbps']:.1f} kbps real): PESQ-WB "
                   f"{fmt('pesq_wb', v)} vs {SPEECH_BAR_PESQ:.1f}, reaches it: "
                   f"**{beats(v, SPEECH_BAR_PESQ, or_equal=True)}**.")
    return "\n".join(out)


# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Quality benchmark of nwc tiers against speech and audio codec anchors.",
    )
    p.add_argument("data_dir", type=Path,
                   help="folder searched recursively for .wav (speech, or music with --music)")
    p.add_argument(
        "--music",
        action="store_true",
        help="music mode: 44.1 kHz stereo excerpts, every 44.1 kHz tier at every layer prefix, "
             "MP3/Opus/AAC anchors, ViSQOL (audio) and SI-SNR, and the verdict against MP3",
    )
    p.add_argument(
        "--seconds",
        type=float,
        help=f"code the middle S seconds of each file (default: {MUSIC_SECONDS:g} with --music, "
             "else whole clips; 0 = whole clips)",
    )
    p.add_argument(
        "--tiers",
        default="",
        help="comma-separated nwc tier names (default: all installed; 'none' = skip)",
    )
    p.add_argument(
        "--anchors",
        help=f"comma-separated anchors: speech from {','.join(ALL_ANCHORS)}; music from "
             f"{','.join(MUSIC_ANCHORS)} (default: all of the mode's; 'none' = skip)",
    )
    p.add_argument(
        "--clips",
        type=int,
        default=24,
        help="number of evenly spaced clips from the sorted list (0 = all)",
    )
    p.add_argument("--out-md", type=Path, help="also write the Markdown table here")
    p.add_argument("--out-csv", type=Path, help="also write the table (plus extras) as CSV")
    p.add_argument("--per-clip-csv", type=Path, help="write every clip x system result here")
    p.add_argument("--no-visqol", action="store_true", help="skip the ViSQOL column")
    p.add_argument("--nwc", help="command that runs nwc (default: the venv's `nwc`)")
    p.add_argument("--stereo", default="",
                   help="comma-separated nwc --stereo modes to run every tier with, side by "
                        "side (auto, ms, lr; default: the encoder's default only)")
    p.add_argument("--workdir", type=Path, help="keep coded files here (default: temp dir)")
    args = p.parse_args(argv)

    if not args.data_dir.is_dir():
        raise SystemExit(f"{args.data_dir} is not a folder")
    profile = MUSIC if args.music else SPEECH
    seconds = profile.seconds if args.seconds is None else max(0.0, args.seconds)
    rate = profile.rate
    notes: list[str] = []
    clips = pick_clips(args.data_dir, args.clips)
    systems = build_systems(args, notes, profile)
    if not systems:
        raise SystemExit("nothing to benchmark: no nwc tier and no anchor available")

    visqol: Visqol | None = None
    if args.no_visqol:
        notes.append("ViSQOL column skipped (--no-visqol).")
    else:
        visqol = Visqol(profile.visqol_mode, rate)
        notes.append(visqol.note)
        if profile is MUSIC and visqol.api is not None:
            # Per channel rather than on the mid: a mid would cancel side-channel errors.
            notes[-1] = notes[-1].rstrip(".") + "; on each channel (L, R), averaged."
    has_visqol = visqol is not None and visqol.api is not None
    columns = [c for c in profile.columns if has_visqol or c[0] != "visqol"]

    log(f"{len(clips)} clips from {args.data_dir}, {len(systems)} systems ({profile.name})")
    max_lag = int(MAX_LAG_S * rate)
    per_clip: list[dict] = []
    t0 = time.time()
    total_s = 0.0
    with contextlib.ExitStack() as stack:
        if args.workdir:
            root = args.workdir
            root.mkdir(parents=True, exist_ok=True)
        else:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nwc-bench-")))

        # Pass 1: code every clip with every system; pool cross-correlations per system.
        # Stereo is aligned on its mid, (L+R)/2: one lag for both channels.
        refs: list[Path] = []
        for ci, clip in enumerate(clips):
            ref = excerpt(profile.read(clip), int(round(seconds * rate)))
            pcm = np.clip(np.round(ref * 32768.0), -32768, 32767).astype(np.int16)
            ref = pcm.astype(np.float64) / 32768.0  # exactly what every codec is given
            total_s += len(ref) / rate
            clip_dir = root / f"clip{ci:03d}"
            clip_dir.mkdir(exist_ok=True)
            ref_wav = clip_dir / "ref.wav"
            sf.write(str(ref_wav), pcm, rate, subtype="PCM_16")
            refs.append(ref_wav)
            ref_mid = metrics.mono(ref)
            ref_env = metrics.envelope(ref_mid, rate)
            log(
                f"[code {ci + 1}/{len(clips)}] {clip.relative_to(args.data_dir)} "
                f"({len(ref) / rate:.2f} s)"
            )
            for si, s in enumerate(systems):
                work = clip_dir / f"sys{si:02d}"
                work.mkdir(exist_ok=True)
                try:
                    nbytes, dec = s.run(ref_wav, pcm, work)
                except Exception as exc:
                    s.failures += 1
                    log(f"    {s.codec} {s.mode}: FAILED: {exc}")
                    continue
                dec_mid = metrics.mono(dec)
                wave = xcorr(ref_mid, dec_mid, max_lag)
                s.add_xcorr(wave, xcorr(ref_env, metrics.envelope(dec_mid, rate), max_lag))
                dec_path = clip_dir / f"dec{si:02d}.npy"
                np.save(dec_path, dec.astype(np.float32))
                own = int(np.argmax(wave))
                s.coded[ci] = (nbytes, dec_path, own - max_lag, float(wave[own]))
                if not args.workdir:
                    shutil.rmtree(work, ignore_errors=True)
            log(f"    coded, {time.time() - t0:.0f} s elapsed")

        # Pass 2: align with the system's lag, then measure.
        for si, s in enumerate(systems):
            s.choose_lag(max_lag)
            for ci, (nbytes, dec_path, own_lag, own_peak) in sorted(s.coded.items()):
                ref = as_channels(profile.read(refs[ci]))
                duration = len(ref) / rate
                dec = as_channels(np.load(dec_path).astype(np.float64), ref.shape[1])
                if own_peak >= WAVEFORM_PEAK_MIN:
                    lag = metrics.refine_delay(metrics.mono(ref), metrics.mono(dec), own_lag)
                    how = "clip"
                else:
                    lag, how = float(s.lag), f"pooled {s.align}"
                s.lags.append(lag)
                s.how_per_clip.append(how)
                r = {"real_kbps": nbytes * 8 / duration / 1000.0, "lag_samples": lag}
                r.update(measure_channels(ref, dec, lag, visqol, rate, profile.keys))
                s.rows.append(r)
                per_clip.append(
                    {
                        "clip": clips[ci].relative_to(args.data_dir).as_posix(),
                        "codec": s.codec,
                        "mode": s.mode,
                        "bytes": nbytes,
                        "duration_s": duration,
                        "clip_lag": own_lag,
                        "align": how,
                        "clip_peak": own_peak,
                        **r,
                    }
                )
            hows = "/".join(sorted(set(s.how_per_clip)))
            log(
                f"[measure {si + 1}/{len(systems)}] {s.codec} {s.mode}: lags "
                f"{lag_span(s.lags) if s.lags else '-'} ({hows}; pooled {s.align} {s.lag}, "
                f"peak {s.peak:.2f}), {time.time() - t0:.0f} s elapsed"
            )

    rows = [summarise(s, len(clips)) for s in systems]
    for s in systems:
        if s.failures:
            notes.append(
                f"{s.codec} {s.mode}: failed on {s.failures} of {len(clips)} clips; "
                "means are over the rest."
            )
    if profile is MUSIC:
        cut = (f"the middle {seconds:g} s of each file (all of a shorter one)" if seconds
               else "whole files")
        notes.insert(
            0,
            f"Means over {len(clips)} clip{'s' * (len(clips) != 1)} ({total_s:.1f} s): {cut} "
            f"from `{args.data_dir}`, evenly spaced in sorted order, at 44.1 kHz 16-bit with "
            "stereo kept; real kbps = encoded file bytes x 8 / duration (container included); "
            "ViSQOL and SI-SNR per channel on outputs aligned to the reference, averaged over "
            "channels (one the reference leaves silent is left out), then over clips.",
        )
    else:
        notes.insert(
            0,
            f"Means over {len(clips)} clip{'s' * (len(clips) != 1)} ({total_s:.1f} s) "
            f"from `{args.data_dir}`, "
            "evenly spaced in sorted order; real kbps = encoded file bytes x 8 / duration "
            "(container included); SI-SNR/STOI/PESQ/ViSQOL on outputs aligned to the reference.",
        )
    if any(s.codec == "nwc" for s in systems):
        stereo = ", the CLI's default stereo coding" if profile is MUSIC else ""
        notes.append(
            f"nwc `TIER LK`: the first K layers of a layered tier (`nwc encode --layers K`"
            f"{stereo}); nominal kbps = the tier's training target for that prefix, else its "
            "measured dev kbps."
        )
    if profile is MUSIC:
        notes.append(
            "LAME picks its own coded rate for a bit rate, as `lame -b K` does (from 44.1 kHz: "
            "16 kHz at 32 kbps, 22.05 kHz at 48, 24 kHz at 64, 44.1 kHz from 80 up); Opus codes "
            "at 48 kHz (opusenc resamples, `opusdec --rate 44100` back); every decode is read "
            "at 44.1 kHz."
        )
    notes.insert(1, alignment_note(systems, profile))
    table = markdown(rows, columns)
    notes_md = "\n".join(f"- {n}" for n in notes if n)
    text = table + "\n\n" + notes_md + "\n"
    add_references(rows, profile.references)
    text += "\n" + (verdict(rows) if profile is MUSIC else speech_verdict(rows)) + "\n"
    print(text, end="")

    if args.out_md:
        args.out_md.parent.mkdir(parents=True, exist_ok=True)
        args.out_md.write_text(text)
    if args.out_csv:
        args.out_csv.parent.mkdir(parents=True, exist_ok=True)
        keys = [k for k, _ in columns] + [
            "lag_samples",
            "lag_min",
            "lag_max",
            "align",
            "pooled_peak",
            "clips_ok",
            "clips",
        ] + profile.extra_keys
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
        args.out_csv.write_text(buf.getvalue())
    if args.per_clip_csv and per_clip:
        args.per_clip_csv.parent.mkdir(parents=True, exist_ok=True)
        with open(args.per_clip_csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(per_clip[0]), extrasaction="ignore")
            w.writeheader()
            w.writerows(per_clip)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
