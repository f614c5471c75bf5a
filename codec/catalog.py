"""Installed tiers as their JSON files describe them: no model, no torch.

``tier.load`` builds a tier's networks, which needs torch (about 1 s to import). What a stream
header needs (rate, framing, layer count, the weights hash) and what tier choice needs (the
measured bitrates) are all in the tier's JSON (``tierfile.TierFile``), so ``nwc encode - -``
writes its header from here before it imports torch.

Tiers are looked up in the shipped ``nwc/weights`` folder and in the folders listed in the
``NWC_WEIGHTS`` environment variable (``os.pathsep``-separated), user folders first.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from ..formats.container import StreamHeader
from .entropy import CODER_ID
from .framing import MAX_PACKET_FRAMES, Framing
from .gain import GAIN_BITS
from .tierfile import TierError, TierFile, peek_name, read

__all__ = ["TierError", "TierFile", "available", "find", "header_for", "info", "latency_ms",
           "packet_framing", "parse_bitrate", "search_dirs"]

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "weights"


def search_dirs() -> list[Path]:
    env = os.environ.get("NWC_WEIGHTS", "")
    dirs = [Path(p) for p in env.split(os.pathsep) if p]
    return dirs + [SHIPPED_DIR]


def available() -> dict[str, Path]:
    """Installed tiers by name (the first folder in the search path wins)."""
    found: dict[str, Path] = {}
    for d in search_dirs():
        for j in sorted(d.glob("*.json")) if d.is_dir() else []:
            name = peek_name(j)
            if name is not None:
                found.setdefault(name, j)
    return found


def parse_bitrate(text: str) -> float:
    """'16k' → 16000.0, '24000' → 24000.0 (as ``nwc train --bitrate`` reads it)."""
    t = text.strip().lower().removesuffix("bps").removesuffix("b")
    mult = 1000.0 if t.endswith("k") else 1.0
    value = float(t.rstrip("k")) * mult
    if not 500 <= value <= 1_000_000:
        raise ValueError(f"bitrate {text!r} out of range (0.5k to 1000k)")
    return value


class TierLike(Protocol):
    """What a stream header needs of a tier (a loaded ``Tier`` or a ``TierFile``)."""

    @property
    def name(self) -> str: ...

    @property
    def sample_rate(self) -> int: ...

    @property
    def framing(self) -> Framing: ...

    @property
    def layers(self) -> int: ...

    @property
    def hash(self) -> str: ...

    @property
    def model_id(self) -> str: ...


ARCHIVE = "archive"  # superseded weights of a tier, kept so its old streams still decode


def find(name: str, weights_hash: str | None = None) -> Path:
    """The JSON file of an installed tier; with ``weights_hash`` (a stream's), the version
    that wrote it: the current one, or one kept in an ``archive/`` folder beside it when the
    tier's weights were retrained since. Without a match, the current one (whose check then
    says which weights the stream needs)."""
    tiers = available()
    if name not in tiers:
        have = ", ".join(sorted(tiers)) or "none"
        raise TierError(f"tier {name!r} is not installed (installed: {have})")
    if weights_hash is None or read(tiers[name]).hash == weights_hash:
        return tiers[name]
    for d in search_dirs():
        for j in sorted((d / ARCHIVE).glob("*.json")) if (d / ARCHIVE).is_dir() else []:
            if peek_name(j) == name and read(j).hash == weights_hash:
                return j
    return tiers[name]


def info(name: str) -> TierFile:
    """Describe an installed tier by name."""
    return read(find(name))


def packet_framing(tier: TierLike, packet_frames: int | None) -> Framing:
    """The tier's framing with ``packet_frames`` frames a packet (default: the tier's)."""
    if packet_frames is None:
        return tier.framing
    if not 1 <= packet_frames <= MAX_PACKET_FRAMES:
        raise ValueError(f"packet_frames must be 1 to {MAX_PACKET_FRAMES}, not {packet_frames}")
    return replace(tier.framing, packet_frames=packet_frames)


def latency_ms(framing: Framing, sample_rate: int) -> float:
    """Algorithmic latency of a framing: a packet is coded once its last frame is complete
    (P·hop + frame − hop samples after its first sample) and decoded whole."""
    return 1000.0 * framing.packet_span(framing.packet_frames) / sample_rate


def header_for(tier: TierLike, input_rate: int, channels: int, total_samples: int | None,
               tags: dict[str, str] | None = None, layers: int | None = None,
               packet_frames: int | None = None) -> StreamHeader:
    """The stream header for coding ``channels`` channels of ``input_rate`` audio, with
    ``packet_frames`` frames a packet (default: the tier's)."""
    f = packet_framing(tier, packet_frames)
    return StreamHeader(
        sample_rate=tier.sample_rate, original_rate=input_rate, channels=channels,
        total_samples=total_samples, codec_delay=0, tier=tier.name, model_id=tier.model_id,
        weights_hash=tier.hash, frame_size=f.frame, hop_size=f.hop,
        num_layers=layers or tier.layers,
        packet_frames=f.packet_frames, gain_bits=GAIN_BITS, coder=CODER_ID,
        tags=dict(tags or {}))
