#!/usr/bin/env python3
"""Quality benchmark: every installed nwc tier against classic speech and audio codecs.

Codes the same speech clips with every nwc tier (through the real ``nwc`` command line,
``nwc encode`` then ``nwc decode`` as subprocesses) and with every anchor codec at each
point of its bit-rate ladder, then prints ONE Markdown table of means over the clips:

    codec | mode | nominal kbps | real kbps | PESQ-WB | STOI | ViSQOL | SI-SNR dB

Anchors: AMR-WB, Opus, Speex-WB, Codec2, LAME MP3, LC3 (liblc3), and FFmpeg's AAC-LC,
G.722 and Vorbis. Alignment, SI-SNR and the metrics come from ``nwc.codec.metrics``, the
code behind ``nwc eval``, so the two agree on the same pair of files.

Usage::

    python bench/quality.py DATA_DIR [--tiers a,b] [--anchors amrwb,opus,mp3,...]
                            [--clips N] [--out-md FILE] [--out-csv FILE]

See bench/README.md for what each column means; bench/install.sh installs the anchors.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from nwc.codec import metrics

sys.path.insert(0, str(Path(__file__).resolve().parent))
import amrwb  # noqa: E402  (bench/amrwb.py, next to this file)

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
ANCHOR_TOOLS = {
    "opus": ("opusenc", "opusdec"),
    "speex": ("speexenc", "speexdec"),
    "codec2": ("c2enc", "c2dec", "sox"),
    "mp3": ("lame",),
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
DIGITS = {
    "nominal_kbps": 2,
    "real_kbps": 2,
    "pesq_wb": 2,
    "stoi": 3,
    "visqol": 2,
    "si_snr_db": 1,
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Audio helpers


def to_mono_16k(x: np.ndarray, sr: int) -> np.ndarray:
    """float64 mono at 16 kHz."""
    return metrics.resample(metrics.mono(x), sr, SR)


def read_audio(path: Path) -> np.ndarray:
    x, sr = sf.read(str(path), dtype="float64", always_2d=True)
    return to_mono_16k(x, sr)


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
    """ViSQOL speech mode (16 kHz) through ``nwc.codec.metrics``, self-tested at start-up."""

    def __init__(self) -> None:
        self.engine: metrics.Visqol | None = None
        self.note = ""
        try:
            engine = metrics.visqol_for("speech")
        except Exception as exc:
            self.note = f"ViSQOL column skipped: visqol-python not usable ({exc})."
            return
        try:  # proves it runs here, offline, before hours of coding
            t = np.arange(SR * 2) / SR
            x = 0.1 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
            engine(x, x + 1e-3 * np.random.default_rng(0).standard_normal(len(x)), SR)
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
        return self.engine(ref, deg, SR)


def measure(ref: np.ndarray, deg: np.ndarray, visqol: Visqol | None) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        out["pesq_wb"] = metrics.pesq_wb(ref, deg, SR)
    except Exception as exc:  # e.g. NoUtterancesError on silence
        log(f"    PESQ failed: {exc}")
        out["pesq_wb"] = math.nan
    try:
        out["stoi"] = metrics.stoi(ref, deg, SR)
    except ValueError as exc:  # too little speech left
        log(f"    STOI failed: {exc}")
        out["stoi"] = math.nan
    out["si_snr_db"] = metrics.si_snr(ref, deg)
    if visqol is not None and visqol.api is not None:
        try:
            out["visqol"] = visqol(ref, deg)
        except Exception as exc:
            log(f"    ViSQOL failed: {exc}")
            out["visqol"] = math.nan
    return out


# --------------------------------------------------------------------------------------
# Systems under test. ``run(ref_wav, ref_pcm16, work)`` returns (encoded bytes, decoded).

RunFn = Callable[[Path, np.ndarray, Path], tuple[int, np.ndarray]]


@dataclass
class System:
    codec: str
    mode: str
    nominal_kbps: float
    run: RunFn
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


def amrwb_system(mode: int) -> System:
    def run(ref_wav: Path, pcm: np.ndarray, work: Path) -> tuple[int, np.ndarray]:
        data = amrwb.encode(pcm, mode)
        (work / "out.amr").write_bytes(data)  # the file whose size is counted
        dec = amrwb.decode((work / "out.amr").read_bytes())
        return len(data), dec.astype(np.float64) / 32768.0

    return System("AMR-WB", f"mode {mode}", amrwb.MODE_KBPS[mode], run)


def opus_system(kbps: int) -> System:
    def run(ref_wav: Path, pcm: np.ndarray, work: Path) -> tuple[int, np.ndarray]:
        enc, dec = work / "out.opus", work / "out.wav"
        sh(["opusenc", "--quiet", "--bitrate", str(kbps), str(ref_wav), str(enc)])
        sh(["opusdec", "--quiet", "--rate", str(SR), str(enc), str(dec)])
        return enc.stat().st_size, read_audio(dec)

    return System("Opus", f"VBR {kbps}k", float(kbps), run)


def speex_system(q: int) -> System:
    def run(ref_wav: Path, pcm: np.ndarray, work: Path) -> tuple[int, np.ndarray]:
        enc, dec = work / "out.spx", work / "out.wav"
        sh(["speexenc", "-w", "--quality", str(q), str(ref_wav), str(enc)])
        sh(["speexdec", str(enc), str(dec)])
        return enc.stat().st_size, read_audio(dec)

    return System("Speex-WB", f"q{q}", SPEEX_WB_KBPS[q], run)


def codec2_system(mode: str) -> System:
    def run(ref_wav: Path, pcm: np.ndarray, work: Path) -> tuple[int, np.ndarray]:
        nb, enc, dec = work / "in8k.raw", work / "out.c2", work / "out8k.raw"
        raw = ["-t", "raw", "-e", "signed-integer", "-b", "16", "-c", "1"]
        sh(["sox", "-D", str(ref_wav), *raw, str(nb), "rate", "-v", "8000"])
        sh(["c2enc", mode, str(nb), str(enc)])  # .c2 suffix: file with a 7-byte header
        sh(["c2dec", mode, str(enc), str(dec)])
        return enc.stat().st_size, read_raw_s16(dec, 8000)

    return System("Codec2 (8 kHz)", mode, CODEC2_MODES[mode], run)


def mp3_system(kbps: int) -> System:
    # `lame --decode` keeps the encoder and decoder delays: its output trails the input by
    # 576 samples at the coded rate (16 kHz; 8 kHz at 8 kbps, i.e. 1152 at 16 kHz), which
    # alignment removes like any other codec delay.
    def run(ref_wav: Path, pcm: np.ndarray, work: Path) -> tuple[int, np.ndarray]:
        enc, dec = work / "out.mp3", work / "out.wav"
        sh(["lame", "--quiet", "--cbr", "-b", str(kbps), str(ref_wav), str(enc)])
        sh(["lame", "--quiet", "--decode", str(enc), str(dec)])
        return enc.stat().st_size, read_audio(dec)

    return System("MP3 (LAME)", f"CBR {kbps}k", float(kbps), run)


def lc3_system(kbps: int) -> System:
    # liblc3's tools store an 18-byte header and a 2-byte length before every 10 ms frame
    # (1.6 kbps), counted in the real rate like every other container.
    def run(ref_wav: Path, pcm: np.ndarray, work: Path) -> tuple[int, np.ndarray]:
        enc, dec = work / "out.lc3", work / "out.wav"
        sh(["elc3", "-b", str(kbps * 1000), "-m", "10", str(ref_wav), str(enc)])
        sh(["dlc3", str(enc), str(dec)])
        return enc.stat().st_size, read_audio(dec)

    return System("LC3", f"10 ms {kbps}k", float(kbps), run)


FFMPEG = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]


def ffmpeg_system(codec: str, mode: str, kbps: float, enc_args: list[str], suffix: str,
                  in_args: tuple[str, ...] = ()) -> System:
    """An anchor coded and decoded by ffmpeg; the decoded WAV is 16-bit at the codec's rate."""

    def run(ref_wav: Path, pcm: np.ndarray, work: Path) -> tuple[int, np.ndarray]:
        enc, dec = work / f"out.{suffix}", work / "out.wav"
        sh([*FFMPEG, "-i", str(ref_wav), *enc_args, str(enc)])
        sh([*FFMPEG, *in_args, "-i", str(enc), "-c:a", "pcm_s16le", str(dec)])
        return enc.stat().st_size, read_audio(dec)

    return System(codec, mode, kbps, run)


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


def ffmpeg_encoders() -> set[str]:
    try:
        p = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True,
                           text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return set()
    return parse_ffmpeg_encoders(p.stdout) if p.returncode == 0 else set()


def nwc_system(nwc: list[str], tier: dict) -> System:
    name = str(tier["name"])

    def run(ref_wav: Path, pcm: np.ndarray, work: Path) -> tuple[int, np.ndarray]:
        enc, dec = work / "out.nwc", work / "out.wav"
        sh([*nwc, "encode", str(ref_wav), str(enc), "--tier", name, "-f", "-q"])
        sh([*nwc, "decode", str(enc), str(dec), "--rate", str(SR), "-f", "-q"])
        return enc.stat().st_size, read_audio(dec)

    nominal = tier.get("target_kbps") or tier.get("kbps") or math.nan
    return System("nwc", name, float(nominal), run)


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
    if nwc is None:
        notes.append("nwc: command not found, no tier benchmarked.")
        return []
    try:
        p = subprocess.run(
            [*nwc, "tiers", "--json"], capture_output=True, text=True, timeout=TIMEOUT_S
        )
    except OSError as exc:
        notes.append(f"nwc: `nwc tiers --json` could not run ({exc}).")
        return []
    if p.returncode != 0:
        notes.append(f"nwc: `nwc tiers --json` exited {p.returncode}; no tier benchmarked.")
        return []
    try:
        tiers = json.loads(p.stdout or "[]")
    except json.JSONDecodeError as exc:
        notes.append(f"nwc: unreadable `nwc tiers --json` output ({exc}).")
        return []
    tiers = [t for t in tiers if isinstance(t, dict) and t.get("name")]
    if not tiers:
        notes.append("nwc: no tier installed (`nwc tiers` is empty); table has anchors only.")
    return tiers


def build_systems(args: argparse.Namespace, notes: list[str]) -> list[System]:
    systems: list[System] = []

    # nwc tiers
    if args.tiers.strip().lower() != "none":
        nwc = find_nwc(args.nwc)
        tiers = nwc_tiers(nwc, notes)
        if args.tiers.strip():
            wanted = [t.strip() for t in args.tiers.split(",") if t.strip()]
            by_name = {str(t["name"]): t for t in tiers}
            missing = [w for w in wanted if w not in by_name]
            if missing and tiers:
                notes.append(f"nwc: tier(s) not installed, skipped: {', '.join(missing)}.")
            tiers = [by_name[w] for w in wanted if w in by_name]
        tiers.sort(key=lambda t: (t.get("target_kbps") or t.get("kbps") or 0, str(t["name"])))
        if nwc is not None:
            systems += [nwc_system(nwc, t) for t in tiers]

    # anchors
    anchors = [a.strip().lower() for a in args.anchors.split(",") if a.strip()]
    anchors = [a for a in anchors if a != "none"]
    # Each anchor's system factory and the settings of its bitrate ladder.
    ladders = {
        "opus": (opus_system, OPUS_KBPS), "speex": (speex_system, SPEEX_QUALITIES),
        "codec2": (codec2_system, CODEC2_MODES), "mp3": (mp3_system, MP3_KBPS),
        "lc3": (lc3_system, LC3_KBPS), "aac": (aac_system, AAC_KBPS),
        "g722": (lambda _: g722_system(), [None]), "vorbis": (vorbis_system, VORBIS_KBPS),
    }
    for a in anchors:
        if a not in ALL_ANCHORS:
            raise SystemExit(f"unknown anchor {a!r}; choose from {', '.join(ALL_ANCHORS)}")
        if a == "amrwb":
            if not amrwb.available():
                notes.append(
                    "AMR-WB skipped: libvo-amrwbenc.so.0 / libopencore-amrwb.so.0 "
                    "not loadable (run bench/install.sh)."
                )
                continue
            systems += [amrwb_system(m) for m in range(len(amrwb.MODE_KBPS))]
            continue
        missing = [t for t in ANCHOR_TOOLS[a] if shutil.which(t) is None]
        if a in FFMPEG_ENCODERS and not missing:
            if FFMPEG_ENCODERS[a] not in ffmpeg_encoders():
                missing = [f"ffmpeg encoder {FFMPEG_ENCODERS[a]}"]
        if missing:
            notes.append(f"{a} skipped: {', '.join(missing)} not found (run bench/install.sh).")
            continue
        make, settings = ladders[a]
        systems += [make(s) for s in settings]
    return systems


# --------------------------------------------------------------------------------------
# Clips


def pick_clips(data_dir: Path, n: int) -> list[Path]:
    files = sorted(
        (p for p in data_dir.rglob("*") if p.is_file() and p.suffix.lower() == ".wav"),
        key=lambda p: p.relative_to(data_dir).as_posix(),
    )
    if not files:
        raise SystemExit(f"no .wav files under {data_dir}")
    if n <= 0 or n >= len(files):
        return files
    idx = np.linspace(0, len(files) - 1, n).round().astype(int)
    return [files[i] for i in idx]


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


def alignment_note(systems: list[System]) -> str:
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
    return (
        "Alignment (`nwc.codec.metrics`, as `nwc eval`): lag in samples at 16 kHz (output "
        "trailing input) at the peak of the clip's normalised waveform cross-correlation with "
        "the reference, refined to a fraction of a sample; where that peak "
        f"is below {WAVEFORM_PEAK_MIN}, the integer peak of the system's cross-correlation "
        "summed over all clips (of amplitude envelopes if that waveform peak is also below it); "
        "both signals are then trimmed to their common span. "
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
    }
    keys = ("real_kbps", "pesq_wb", "stoi", "visqol", "si_snr_db", "lag_samples")
    for k in keys:
        vals = np.array([r[k] for r in s.rows if k in r], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        row[k] = float(vals.mean()) if len(vals) else math.nan
    row["clips_ok"] = len(s.rows)
    row["clips"] = n_clips
    return row


# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Quality benchmark of nwc tiers against speech and audio codec anchors.",
    )
    p.add_argument("data_dir", type=Path, help="folder searched recursively for speech .wav")
    p.add_argument(
        "--tiers",
        default="",
        help="comma-separated nwc tier names (default: all installed; 'none' = skip)",
    )
    p.add_argument(
        "--anchors",
        default=",".join(ALL_ANCHORS),
        help=f"comma-separated anchors from {','.join(ALL_ANCHORS)} ('none' = skip)",
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
    p.add_argument("--workdir", type=Path, help="keep coded files here (default: temp dir)")
    args = p.parse_args(argv)

    if not args.data_dir.is_dir():
        raise SystemExit(f"{args.data_dir} is not a folder")
    notes: list[str] = []
    clips = pick_clips(args.data_dir, args.clips)
    systems = build_systems(args, notes)
    if not systems:
        raise SystemExit("nothing to benchmark: no nwc tier and no anchor available")

    visqol: Visqol | None = None
    if args.no_visqol:
        notes.append("ViSQOL column skipped (--no-visqol).")
    else:
        visqol = Visqol()
        notes.append(visqol.note)
    has_visqol = visqol is not None and visqol.api is not None
    columns = [c for c in COLUMNS if has_visqol or c[0] != "visqol"]

    log(f"{len(clips)} clips from {args.data_dir}, {len(systems)} systems")
    max_lag = int(MAX_LAG_S * SR)
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
        refs: list[Path] = []
        for ci, clip in enumerate(clips):
            ref = read_audio(clip)
            pcm = np.clip(np.round(ref * 32768.0), -32768, 32767).astype(np.int16)
            ref = pcm.astype(np.float64) / 32768.0  # exactly what every codec is given
            total_s += len(ref) / SR
            clip_dir = root / f"clip{ci:03d}"
            clip_dir.mkdir(exist_ok=True)
            ref_wav = clip_dir / "ref.wav"
            sf.write(str(ref_wav), pcm, SR, subtype="PCM_16")
            refs.append(ref_wav)
            ref_env = envelope(ref)
            log(
                f"[code {ci + 1}/{len(clips)}] {clip.relative_to(args.data_dir)} "
                f"({len(ref) / SR:.2f} s)"
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
                wave = xcorr(ref, dec, max_lag)
                s.add_xcorr(wave, xcorr(ref_env, envelope(dec), max_lag))
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
                ref = read_audio(refs[ci])
                duration = len(ref) / SR
                dec = np.load(dec_path).astype(np.float64)
                if own_peak >= WAVEFORM_PEAK_MIN:
                    lag, how = metrics.refine_delay(ref, dec, own_lag), "clip"
                else:
                    lag, how = float(s.lag), f"pooled {s.align}"
                s.lags.append(lag)
                s.how_per_clip.append(how)
                ref_t, deg_t = metrics.align_at(ref, dec, lag)  # as `nwc eval` aligns
                r = {"real_kbps": nbytes * 8 / duration / 1000.0, "lag_samples": lag}
                r.update(measure(ref_t, deg_t, visqol))
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
    notes.insert(
        0,
        f"Means over {len(clips)} clip{'s' * (len(clips) != 1)} ({total_s:.1f} s) "
        f"from `{args.data_dir}`, "
        "evenly spaced in sorted order; real kbps = encoded file bytes x 8 / duration "
        "(container included); SI-SNR/STOI/PESQ/ViSQOL on outputs aligned to the reference.",
    )
    notes.insert(1, alignment_note(systems))
    table = markdown(rows, columns)
    notes_md = "\n".join(f"- {n}" for n in notes if n)
    print(table)
    print()
    print(notes_md)

    if args.out_md:
        args.out_md.parent.mkdir(parents=True, exist_ok=True)
        args.out_md.write_text(table + "\n\n" + notes_md + "\n")
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
        ]
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
