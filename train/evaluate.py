"""Dev evaluation during training: every layer prefix of a tier through the real coder and
container, scored as ``nwc eval`` scores it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from ..codec import api
from ..codec.tier import Tier
from ..evaluation import metrics
from ..formats.container import END, Damage, Packet, encode_packet


def clip_scores(x: np.ndarray, y: np.ndarray, sr: int) -> dict[str, float]:
    """Per-clip quality: PESQ-WB and STOI for 16 kHz tiers; SI-SNR and ViSQOL (audio mode,
    when installed) for general-audio tiers, which PESQ and STOI do not cover."""
    if sr == 16000:
        out = {}
        for name, metric in (("stoi", metrics.stoi), ("pesq_wb", metrics.pesq_wb)):
            try:
                out[name] = metric(x, y, sr)
            except Exception:  # noqa: BLE001 - both refuse clips with too little speech
                pass
        return out
    out = {"si_snr": metrics.si_snr(x, y)}
    if not metrics.missing_packages(("visqol",)):
        out["visqol"] = metrics.visqol_for("audio")(x, y, sr)
    return out


def _ideal_kbps(tier: Tier, encoded: list[list[Packet]], seconds: float) -> list[float]:
    """Information content of each layer's symbols under the shipped tables (ideal rate)."""
    f = tier.framing
    ideal = [0.0] * tier.layers
    for packets in encoded:
        for p in packets:
            n = f.frames_for(p.granule - p.seq * f.packet_hop)
            for k, layer in enumerate(p.layers):
                ideal[k] += api.layer_ideal_bits(tier, k, layer, n)
    return [sum(ideal[:k + 1]) / seconds / 1000 for k in range(tier.layers)]


def _cut_stream(tier: Tier, x: np.ndarray, packets: list[Packet], k: int
                ) -> tuple[int, np.ndarray]:
    """(bytes, decoded) of a clip's stream cut to ``k`` layers (exactly a k-layer encode)."""
    sr = tier.sample_rate
    cut: list[Packet | Damage] = [
        Packet(kind=p.kind, seq=p.seq, granule=p.granule, side=p.side, layers=p.layers[:k])
        for p in packets]
    h = api.header_for(tier, sr, 1, x.shape[0], layers=k)
    end = Packet(kind=END, seq=len(cut), granule=x.shape[0], side=b"", layers=[],
                 original_samples=x.shape[0])
    size = sum(len(encode_packet(p)) for p in cut if isinstance(p, Packet)) \
        + len(encode_packet(end))
    return size, api.decode_packets(tier, h, cut + [end])[:, 0]


@contextmanager
def torch_threads_kept() -> Iterator[None]:
    """Restore torch's intra-op thread count after the metrics have run.

    ViSQOL's numba code (OpenMP threading layer) sets the calling thread's OpenMP thread
    count to the number of cores, and torch reads the same setting: a one-thread training run
    went on with two threads after its first evaluation, on a core another run was using,
    and each step cost 2-15 times as much until the process ended."""
    n = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(n)


def evaluate(tier: Tier, clips: list[np.ndarray]) -> list[dict]:
    """Real kbps and quality (PESQ-WB and STOI at 16 kHz, else SI-SNR and ViSQOL audio) of
    every layer prefix of ``tier`` on mono dev ``clips``."""
    with torch_threads_kept():
        return _evaluate(tier, clips)


def _evaluate(tier: Tier, clips: list[np.ndarray]) -> list[dict]:
    sr = tier.sample_rate
    encoded = [api.encode_array(tier, x, sr) for x in clips]
    seconds = sum(x.shape[0] for x in clips) / sr
    ideal = _ideal_kbps(tier, encoded, seconds)
    results = []
    for k in range(1, tier.layers + 1):
        total_bytes = 0
        scores: dict[str, list[float]] = {}
        for x, packets in zip(clips, encoded, strict=True):
            size, y = _cut_stream(tier, x, packets, k)
            total_bytes += size
            for name, v in clip_scores(x, y, sr).items():
                scores.setdefault(name, []).append(v)
        row = {"layers": k, "kbps": 8 * total_bytes / seconds / 1000, "ideal_kbps": ideal[k - 1]}
        if sr == 16000:
            row["pesq_wb"] = float(np.mean(scores["pesq_wb"])) if "pesq_wb" in scores \
                else float("nan")
        row.update({name: float(np.mean(v)) for name, v in scores.items() if name != "pesq_wb"})
        row.update({"clips": len(clips), "seconds": round(seconds, 1)})
        results.append(row)
    return results


def excerpt(x: np.ndarray, n: int) -> np.ndarray:
    """``n`` samples of a dev file: its start, or its middle for long files (music tracks
    often open with silence or a fade)."""
    start = (x.shape[0] - n) // 2 if x.shape[0] > 2 * n else 0
    return x[start: start + n]
