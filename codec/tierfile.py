"""The tier file: the one reader and writer of a tier's JSON, and the stream hash. No torch.

A tier is ``NAME.json`` (this module) beside ``NAME.safetensors`` (the weights). The JSON
holds what coding needs besides the weights (rate, framing, the cascade's architecture, the
integer code tables) and what people need to choose a tier (measured rates and scores, the
training record). Everything that interprets it (the catalog, tier loading and saving,
``nwc tiers``, the bench) goes through ``TierFile``.

The *stream hash*, written into every stream header, identifies weights + coding: a stream
decodes only with the exact tier that wrote it. It is ``stream_hash(weights_sha256,
coding_dict(...))``, computed here alone, whether from a file or from a tier in memory.

Format ``nwc-tier-1`` (one NWC module, no LPC) is read and upgraded in memory, keeping its
original stream hash; writing always produces ``nwc-tier-2``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import CascadeConfig
from .entropy import CodeTables
from .framing import Framing

TIER_FORMAT = "nwc-tier-2"
LEGACY_FORMAT = "nwc-tier-1"   # one NWC module, no LPC
FORMATS = (TIER_FORMAT, LEGACY_FORMAT)
# A legacy file's single module, as a cascade (CascadeConfig's defaults).
_LEGACY_CASCADE = {"stages": 1, "lpc": False, "res_scale": 4.0, "lsf_levels": 127}
# Metrics a tier's dev evaluation may record, per layer prefix.
METRICS = ("kbps", "pesq_wb", "stoi", "visqol", "si_snr")


class TierError(RuntimeError):
    """A tier is missing, damaged or does not match what a stream needs."""


def framing_dict(f: Framing) -> dict[str, int]:
    return {"frame": f.frame, "hop": f.hop, "packet_frames": f.packet_frames}


def coding_dict(sample_rate: int, framing: Framing, cascade: dict, tables: list,
                lsf_tables: list | None, legacy: bool = False) -> dict:
    """What besides the weights decides a stream's bytes (the stream hash's input)."""
    if legacy:
        return {"sample_rate": sample_rate, "framing": framing_dict(framing),
                "config": cascade["nwc"], "tables": tables[0]}
    return {"sample_rate": sample_rate, "framing": framing_dict(framing), "cascade": cascade,
            "tables": tables, "lsf_tables": lsf_tables}


def stream_hash(weights_sha256: str, coding: dict) -> str:
    """Identity of weights + tables + framing, as written into stream headers."""
    h = hashlib.sha256(weights_sha256.encode())
    h.update(json.dumps(coding, sort_keys=True).encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class TierFile:
    """A tier as its JSON describes it (the weights are neither read nor checked)."""

    name: str
    sample_rate: int
    framing: Framing
    cascade: dict                      # CascadeConfig.to_dict()
    tables: list                       # one integer table set per stage (layer)
    weights_sha256: str
    lsf_tables: list | None = None
    meta: dict = field(default_factory=dict)
    legacy: bool = False
    path: Path | None = None

    @property
    def layers(self) -> int:
        return int(self.cascade.get("stages", 1))

    @property
    def lpc(self) -> bool:
        return bool(self.cascade.get("lpc", False))

    @property
    def model_id(self) -> str:
        return f"nwc-{self.name}"

    @property
    def hash(self) -> str:
        return stream_hash(self.weights_sha256, coding_dict(
            self.sample_rate, self.framing, self.cascade, self.tables, self.lsf_tables,
            self.legacy))

    @property
    def weights_path(self) -> Path:
        if self.path is None:
            raise TierError(f"tier {self.name!r} has no file")
        return self.path.with_suffix(".safetensors")

    def layer_kbps(self) -> list[float | None]:
        """Measured real bitrate of each layer prefix (1..layers) on the dev set."""
        return layer_kbps(self.meta, self.layers)

    def target_layer_kbps(self) -> list[float | None]:
        """Training's target rate of each layer prefix, where recorded."""
        targets = list(self.meta.get("target_layer_kbps") or [])[: self.layers]
        targets += [None] * (self.layers - len(targets))
        if targets[-1] is None:
            targets[-1] = self.meta.get("target_kbps")
        return targets

    def learning_curve(self) -> list[dict[str, Any]]:
        """Each dev evaluation of the tier's lineage: cumulative steps and CPU minutes, and
        every layer prefix's scores (``nwc tiers --history``)."""
        rows = []
        for p in self.meta.get("history", []):
            cpu = p.get("total_cpu_minutes", p.get("cpu_minutes", p.get("minutes")))
            rows.append({"steps": p.get("total_steps", p.get("step")), "cpu_minutes": cpu,
                         "layers": [{k: m.get(k) for k in METRICS} for m in p.get("layers", [])]})
        return rows

    def summary(self) -> dict[str, Any]:
        """The row ``nwc tiers --json`` prints."""
        dev = self.meta.get("dev", {})
        layers = self.meta.get("dev_layers") or [dev]
        return {"name": self.name, "sample_rate": self.sample_rate, "lpc": self.lpc,
                "stages": self.layers,
                "layers": [{k: m.get(k) for k in METRICS} for m in layers],
                "kbps": dev.get("kbps"), "target_kbps": self.meta.get("target_kbps"),
                "target_layer_kbps": self.target_layer_kbps(),
                **{k: dev.get(k) for k in METRICS[1:]},
                "parameters": self.meta.get("parameters"), "path": str(self.path)}

    def to_doc(self) -> dict:
        """The JSON document (always the current format)."""
        return {"format": TIER_FORMAT, "name": self.name, "weights_sha256": self.weights_sha256,
                **coding_dict(self.sample_rate, self.framing, self.cascade, self.tables,
                              self.lsf_tables),
                "meta": self.meta}


def layer_kbps(meta: dict, layers: int) -> list[float | None]:
    """Measured real bitrate of each layer prefix (1..layers) on the dev set, from a tier's
    ``meta`` (where only the full stream was measured, the others are None)."""
    per = meta.get("dev_layers")
    if per and len(per) == layers:
        return [m.get("kbps") for m in per]
    return [None] * (layers - 1) + [meta.get("dev", {}).get("kbps")]


def is_tier(doc: object) -> bool:
    return isinstance(doc, dict) and doc.get("format") in FORMATS


def parse(doc: dict, path: Path | None = None) -> TierFile:
    """A ``TierFile`` from a parsed JSON document; TierError if it is not a sound tier."""
    if not is_tier(doc):
        fmt = doc.get("format") if isinstance(doc, dict) else None
        raise TierError(f"{path or 'document'} is not an nwc tier (format {fmt!r})")
    try:
        fr = doc["framing"]
        framing = Framing(int(fr["frame"]), int(fr["hop"]), int(fr["packet_frames"]))
        legacy = doc["format"] == LEGACY_FORMAT
        if legacy:
            cascade = {"nwc": doc["config"], **_LEGACY_CASCADE}
            tables, lsf = [doc["tables"]], None
        else:
            cascade, tables, lsf = doc["cascade"], list(doc["tables"]), doc.get("lsf_tables")
        if not isinstance(cascade, dict) or len(tables) != int(cascade.get("stages", 1)):
            raise ValueError("stages and code tables disagree")
        return TierFile(str(doc["name"]), int(doc["sample_rate"]), framing, cascade, tables,
                        str(doc["weights_sha256"]), lsf, dict(doc.get("meta") or {}), legacy,
                        Path(path) if path is not None else None)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise TierError(f"tier {doc.get('name')!r} is damaged: {e}") from None


def read(json_path: Path) -> TierFile:
    """Read and parse one tier file."""
    try:
        doc = json.loads(Path(json_path).read_text())
    except (OSError, ValueError) as e:
        raise TierError(f"cannot read tier file {json_path}: {e}") from None
    return parse(doc, Path(json_path))


def peek_name(json_path: Path) -> str | None:
    """The tier name of a JSON file, or None if it is not a tier (for folder scans)."""
    try:
        doc = json.loads(Path(json_path).read_text())
    except (OSError, ValueError):
        return None
    return str(doc.get("name", Path(json_path).stem)) if is_tier(doc) else None


def coding_parts(tf: TierFile) -> tuple[CascadeConfig, list[CodeTables], CodeTables | None]:
    """The architecture and the integer code tables a tier file describes, for either engine;
    ValueError if they do not fit together."""
    config = CascadeConfig.from_dict(tf.cascade)
    tables = [CodeTables(np.asarray(t)) for t in tf.tables]
    lsf = None if tf.lsf_tables is None else CodeTables(np.asarray(tf.lsf_tables))
    if config.lpc != (lsf is not None):
        raise ValueError("LSF code tables are needed exactly when the tier has LPC")
    return config, tables, lsf


def check_weights(tf: TierFile) -> bytes:
    """The weights file's bytes, after checking them against the JSON's sha256."""
    try:
        raw = tf.weights_path.read_bytes()
    except OSError as e:
        raise TierError(f"missing weights for tier {tf.name!r}: {e}") from None
    if hashlib.sha256(raw).hexdigest() != tf.weights_sha256:
        raise TierError(f"weights of tier {tf.name!r} do not match their hash "
                        f"({tf.weights_path})")
    return raw


def write(stem: Path, tf: TierFile, weights_tmp: Path) -> None:
    """Install ``weights_tmp`` (already written) as ``stem.safetensors`` and write
    ``stem.json``, both readable by all (safetensors writes 0600) and via rename."""
    umask = os.umask(0o022)
    os.umask(umask)
    os.chmod(weights_tmp, 0o666 & ~umask)
    jtmp = stem.with_suffix(".json.tmp")
    jtmp.write_text(json.dumps(tf.to_doc(), indent=1) + "\n")
    os.replace(weights_tmp, stem.with_suffix(".safetensors"))
    os.replace(jtmp, stem.with_suffix(".json"))
