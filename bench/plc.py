"""Packet loss: nwc's concealment vs silence, and Opus with its own PLC, at equal loss rates.

Used by ``bench/packets.py --loss 1,5,10`` (see there). Each clip is coded once; for every
loss rate each AUDIO packet is dropped independently with that probability (a fixed seed
per clip and rate, END never), the stream decoded with ``conceal="auto"`` and with
``"silence"``, and both compared with the clean decode of the same stream: PESQ-WB and
ViSQOL (speech mode) after ``nwc eval``'s alignment. Opus: the clip coded with ``opusenc``
(20 ms frames, the given bitrate), decoded by ``opusdec`` cleanly and with
``--packet-loss N`` (its own PLC), the lossy decode compared with the clean one.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from nwc.codec import api
from nwc.evaluation import metrics
from nwc.formats.container import AUDIO

METRICS = ("pesq_wb", "visqol")


def _score(ref: np.ndarray, deg: np.ndarray, rate: int) -> dict[str, float]:
    rep, _ = metrics.evaluate(ref, deg, rate, mode="speech", metrics=METRICS)
    return {m: rep[m] for m in METRICS}


def _lose(packets: list, rate: float, rng: np.random.Generator) -> tuple[list, int]:
    kept = [p for p in packets if p.kind != AUDIO or rng.random() >= rate]
    return kept, len(packets) - len(kept)


def nwc_loss(t, clips: list[np.ndarray], rates: list[float], packet_frames: int,
             seed: int = 0) -> dict[tuple[float, str], dict[str, float]]:
    """Mean scores per (loss rate, "auto" | "silence") over ``clips`` (mono, tier rate)."""
    acc: dict[tuple[float, str], list[dict[str, float]]] = {}
    for i, x in enumerate(clips):
        pk = api.encode_array(t, x, t.sample_rate, packet_frames=packet_frames)
        h = api.header_for(t, t.sample_rate, 1, x.shape[0], packet_frames=packet_frames)
        clean = api.decode_packets(t, h, pk)[:, 0]
        for r in rates:
            kept, _ = _lose(pk, r, np.random.default_rng([seed, i, int(r * 1000)]))
            for mode in ("auto", "silence"):
                y = api.decode_packets(t, h, kept, conceal=mode)[:, 0]
                acc.setdefault((r, mode), []).append(_score(clean, y, t.sample_rate))
    return {k: {m: float(np.mean([v[m] for v in vs])) for m in METRICS}
            for k, vs in acc.items()}


def _opusdec(opus: Path, loss: float, out: Path, rate: int) -> np.ndarray:
    args = ["opusdec", "--quiet", "--rate", str(rate)]
    if loss:
        args += ["--packet-loss", f"{loss * 100:g}"]
    subprocess.run([*args, str(opus), str(out)], check=True)
    return sf.read(out, dtype="float32")[0]


def opus_loss(clips: list[np.ndarray], rate: int, rates: list[float], kbps: float
              ) -> dict[float, dict[str, float]] | None:
    """Mean scores per loss rate of Opus with its PLC; None without opus-tools."""
    if not (shutil.which("opusenc") and shutil.which("opusdec")):
        return None
    acc: dict[float, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as d:
        for i, x in enumerate(clips):
            wav, opus = Path(d) / f"{i}.wav", Path(d) / f"{i}.opus"
            sf.write(wav, x, rate, subtype="PCM_16")
            subprocess.run(["opusenc", "--quiet", "--bitrate", f"{kbps:g}", "--framesize", "20",
                            str(wav), str(opus)], check=True)

            clean = _opusdec(opus, 0, Path(d) / f"{i}.clean.wav", rate)
            for r in rates:
                y = _opusdec(opus, r, Path(d) / f"{i}.{r}.wav", rate)
                acc.setdefault(r, []).append(_score(clean, y, rate))
    return {r: {m: float(np.mean([v[m] for v in vs])) for m in METRICS}
            for r, vs in acc.items()}


def table(name: str, packet_ms: float, rates: list[float], nwc: dict, opus: dict | None,
          opus_kbps: float) -> list[str]:
    """Markdown rows: one per loss rate, concealment / silence / Opus PLC side by side."""
    lines = []
    for r in rates:
        a, s = nwc[(r, "auto")], nwc[(r, "silence")]
        o = opus[r] if opus else None
        ocell = f"{o['pesq_wb']:.2f} | {o['visqol']:.2f}" if o else "– | –"
        lines.append(f"| {name} ({packet_ms:.0f} ms packets) | {r * 100:g} % "
                     f"| **{a['pesq_wb']:.2f}** | {s['pesq_wb']:.2f} "
                     f"| **{a['visqol']:.2f}** | {s['visqol']:.2f} "
                     f"| {ocell} ({opus_kbps:g} kbps, 20 ms) |")
    return lines
