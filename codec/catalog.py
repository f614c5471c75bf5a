"""Installed tiers as their JSON files describe them: no model, no torch.

``tier.load`` builds a tier's networks, which needs torch (about 1 s to import). What a stream
header needs (rate, framing, layer count, the weights hash) and what tier choice needs (the
measured bitrates) are all in the tier's JSON, so ``nwc encode - -`` writes its header from
here before it imports torch. ``TierInfo.hash`` is computed from the JSON exactly as
``Tier.hash`` is from the loaded objects (both hash what ``Tier.save`` wrote; tested for every
shipped tier), and the CLI checks that they agree once the model is loaded.

Tiers are looked up in the shipped ``nwc/weights`` folder and in the folders listed in the
``NWC_WEIGHTS`` environment variable (``os.pathsep``-separated), user folders first.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from ..formats.container import StreamHeader
from .entropy import CODER_ID
from .framing import MAX_PACKET_FRAMES, Framing
from .gain import GAIN_BITS

TIER_FORMAT = "nwc-tier-2"
LEGACY_FORMAT = "nwc-tier-1"   # one NWC module, no LPC
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "weights"


class TierError(RuntimeError):
    """A tier is missing, damaged or does not match what a stream needs."""


def search_dirs() -> list[Path]:
    env = os.environ.get("NWC_WEIGHTS", "")
    dirs = [Path(p) for p in env.split(os.pathsep) if p]
    return dirs + [SHIPPED_DIR]


def available() -> dict[str, Path]:
    """Installed tiers by name (the first folder in the search path wins)."""
    found: dict[str, Path] = {}
    for d in search_dirs():
        for j in sorted(d.glob("*.json")) if d.is_dir() else []:
            try:
                doc = json.loads(j.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(doc, dict) and doc.get("format") in (TIER_FORMAT, LEGACY_FORMAT):
                found.setdefault(str(doc.get("name", j.stem)), j)
    return found


def parse_bitrate(text: str) -> float:
    """'16k' → 16000.0, '24000' → 24000.0 (as ``nwc train --bitrate`` reads it)."""
    t = text.strip().lower().removesuffix("bps").removesuffix("b")
    mult = 1000.0 if t.endswith("k") else 1.0
    value = float(t.rstrip("k")) * mult
    if not 500 <= value <= 1_000_000:
        raise ValueError(f"bitrate {text!r} out of range (0.5k to 1000k)")
    return value


def check_weights(info: TierInfo) -> None:
    """Refuse a tier whose weights file is missing or does not match its JSON (as
    ``tier.load`` would, but without torch: ``nwc encode - -`` checks before its header)."""
    path = info.path.with_suffix(".safetensors")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise TierError(f"missing weights for tier {info.name!r}: {e}") from None
    if hashlib.sha256(raw).hexdigest() != info.weights_sha256:
        raise TierError(f"weights of tier {info.name!r} do not match their hash ({path})")


def stream_hash(weights_sha256: str, coding: dict) -> str:
    """Identity of weights + tables + framing, as written into stream headers."""
    h = hashlib.sha256(weights_sha256.encode())
    h.update(json.dumps(coding, sort_keys=True).encode())
    return h.hexdigest()[:16]


def layer_kbps(meta: dict, layers: int) -> list[float | None]:
    """Measured real bitrate of each layer prefix (1..layers) on the dev set."""
    per = meta.get("dev_layers")
    if per and len(per) == layers:
        return [m.get("kbps") for m in per]
    return [None] * (layers - 1) + [meta.get("dev", {}).get("kbps")]


class TierLike(Protocol):
    """What a stream header needs of a tier (a loaded ``Tier`` or a ``TierInfo``)."""

    name: str
    sample_rate: int
    framing: Framing

    @property
    def layers(self) -> int: ...

    @property
    def hash(self) -> str: ...

    @property
    def model_id(self) -> str: ...


@dataclass(frozen=True)
class TierInfo:
    """A tier as its JSON describes it."""

    name: str
    path: Path
    sample_rate: int
    framing: Framing
    layers: int
    hash: str
    weights_sha256: str
    meta: dict = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        return f"nwc-{self.name}"

    def layer_kbps(self) -> list[float | None]:
        return layer_kbps(self.meta, self.layers)


def read_doc(json_path: Path) -> dict:
    """A tier's JSON document, after checking it is one (its contents are not checked)."""
    try:
        doc = json.loads(Path(json_path).read_text())
    except (OSError, ValueError) as e:
        raise TierError(f"cannot read tier file {json_path}: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") not in (TIER_FORMAT, LEGACY_FORMAT):
        fmt = doc.get("format") if isinstance(doc, dict) else None
        raise TierError(f"{json_path} is not an nwc tier (format {fmt!r})")
    return doc


def find(name: str) -> Path:
    """The JSON file of an installed tier."""
    tiers = available()
    if name not in tiers:
        have = ", ".join(sorted(tiers)) or "none"
        raise TierError(f"tier {name!r} is not installed (installed: {have})")
    return tiers[name]


def read(json_path: Path) -> TierInfo:
    """Describe one tier from its JSON file (the weights file is neither read nor checked)."""
    json_path = Path(json_path)
    doc = read_doc(json_path)
    try:
        fr = doc["framing"]
        framing = Framing(int(fr["frame"]), int(fr["hop"]), int(fr["packet_frames"]))
        rate = int(doc["sample_rate"])
        # The dict Tier._coding_dict rebuilds from the loaded objects (what save() wrote).
        coding: dict = {"sample_rate": rate, "framing": {
            "frame": framing.frame, "hop": framing.hop, "packet_frames": framing.packet_frames}}
        if doc["format"] == LEGACY_FORMAT:
            coding.update(config=doc["config"], tables=doc["tables"])
            layers = 1
        else:
            coding.update(cascade=doc["cascade"], tables=doc["tables"],
                          lsf_tables=doc.get("lsf_tables"))
            layers = int(doc["cascade"].get("stages", 1))
        weights = str(doc["weights_sha256"])
        return TierInfo(str(doc["name"]), json_path, rate, framing, layers,
                        stream_hash(weights, coding), weights, dict(doc.get("meta") or {}))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise TierError(f"tier {doc.get('name')!r} is damaged: {e}") from None


def info(name: str) -> TierInfo:
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
