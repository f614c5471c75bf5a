"""Tiers: a trained NWC module plus its code tables, stored as NAME.safetensors + NAME.json.

The JSON holds the architecture, framing, integer code tables, the sha256 of the safetensors
file, and what training measured. Loading is strict (every tensor must match) and checks the
hash, so a stream can name exactly the weights it needs. No pickle anywhere.

Tiers are looked up in the shipped ``nwc/weights`` folder and in the folders listed in the
``NWC_WEIGHTS`` environment variable (``os.pathsep``-separated), user folders first.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .entropy import CodeTables
from .framing import Framing
from .model import NWC, NWCConfig

TIER_FORMAT = "nwc-tier-1"
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "weights"


class TierError(RuntimeError):
    """A tier is missing, damaged or does not match what a stream needs."""


@dataclass
class Tier:
    """Everything the codec needs to code one bitrate tier."""

    name: str
    sample_rate: int
    framing: Framing
    config: NWCConfig
    model: NWC
    tables: CodeTables
    meta: dict = field(default_factory=dict)
    weights_sha256: str = ""

    @property
    def model_id(self) -> str:
        return f"nwc-{self.name}"

    @property
    def hash(self) -> str:
        """Identity of weights + tables + framing, as written into stream headers."""
        h = hashlib.sha256(self.weights_sha256.encode())
        h.update(json.dumps(self._coding_dict(), sort_keys=True).encode())
        return h.hexdigest()[:16]

    @property
    def symbols_per_second(self) -> float:
        steps = self.model.code_steps * self.config.code_channels
        return steps * self.sample_rate / self.framing.hop

    @property
    def kbps(self) -> float | None:
        """Measured real bitrate on the dev set, if training recorded one."""
        return self.meta.get("dev", {}).get("kbps")

    def _coding_dict(self) -> dict:
        return {
            "sample_rate": self.sample_rate,
            "framing": {"frame": self.framing.frame, "hop": self.framing.hop,
                        "packet_frames": self.framing.packet_frames},
            "config": self.config.to_dict(),
            "tables": self.tables.to_list(),
        }

    def save(self, stem: Path, extra: dict | None = None) -> None:
        """Write ``stem.safetensors`` and ``stem.json`` (atomically, via temp files)."""
        stem = Path(stem)
        stem.parent.mkdir(parents=True, exist_ok=True)
        weights = stem.with_suffix(".safetensors")
        tmp = weights.with_suffix(".safetensors.tmp")
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(tmp))
        umask = os.umask(0o022)  # safetensors writes 0600; tiers are shared, readable files
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        self.weights_sha256 = digest
        if extra:
            self.meta.update(extra)
        doc = {"format": TIER_FORMAT, "name": self.name, "weights_sha256": digest,
               **self._coding_dict(), "meta": self.meta}
        jtmp = stem.with_suffix(".json.tmp")
        jtmp.write_text(json.dumps(doc, indent=1) + "\n")
        os.replace(tmp, weights)
        os.replace(jtmp, stem.with_suffix(".json"))


def build(name: str, sample_rate: int, framing: Framing, config: NWCConfig,
          tables: CodeTables, state: dict | None = None, meta: dict | None = None) -> Tier:
    """Assemble a tier from parts (used by training and tests)."""
    model = NWC(config)
    if state is not None:
        model.load_state_dict(state, strict=True)
    model.eval()
    return Tier(name, sample_rate, framing, config, model, tables, dict(meta or {}))


def load_path(json_path: Path) -> Tier:
    """Load one tier from its JSON file; checks the format, the hash and every tensor."""
    json_path = Path(json_path)
    try:
        doc = json.loads(json_path.read_text())
    except (OSError, ValueError) as e:
        raise TierError(f"cannot read tier file {json_path}: {e}") from None
    if doc.get("format") != TIER_FORMAT:
        raise TierError(f"{json_path} is not an nwc tier (format {doc.get('format')!r})")
    weights = json_path.with_suffix(".safetensors")
    try:
        raw = weights.read_bytes()
    except OSError as e:
        raise TierError(f"missing weights for tier {doc.get('name')!r}: {e}") from None
    if hashlib.sha256(raw).hexdigest() != doc["weights_sha256"]:
        raise TierError(f"weights of tier {doc['name']!r} do not match their hash ({weights})")
    fr = doc["framing"]
    try:
        tier = build(doc["name"], int(doc["sample_rate"]),
                     Framing(fr["frame"], fr["hop"], fr["packet_frames"]),
                     NWCConfig.from_dict(doc["config"]), CodeTables(doc["tables"]),
                     state=load_file(str(weights)), meta=doc.get("meta", {}))
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise TierError(f"tier {doc.get('name')!r} is damaged: {e}") from None
    tier.weights_sha256 = doc["weights_sha256"]
    return tier


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
            if isinstance(doc, dict) and doc.get("format") == TIER_FORMAT:
                found.setdefault(str(doc.get("name", j.stem)), j)
    return found


_CACHE: dict[str, Tier] = {}


def load(name: str) -> Tier:
    """Load an installed tier by name (cached per process)."""
    if name in _CACHE:
        return _CACHE[name]
    tiers = available()
    if name not in tiers:
        have = ", ".join(sorted(tiers)) or "none"
        raise TierError(f"tier {name!r} is not installed (installed: {have})")
    tier = load_path(tiers[name])
    _CACHE[name] = tier
    return tier


def torch_threads(n: int | None) -> None:
    """Limit torch's intra-op threads (one is fastest for these small models)."""
    if n:
        torch.set_num_threads(n)
