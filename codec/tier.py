"""Tiers: a trained codec plus its code tables, stored as NAME.safetensors + NAME.json.

The JSON holds the architecture (a CMRL cascade of NWC stages, optionally behind the LPC
module), framing, integer code tables per layer, the sha256 of the safetensors file, and what
training measured. Format 1 (a single NWC module) still loads, as a one-stage cascade with the
same stream hash, so streams written by earlier versions stay decodable. Loading is strict
(every tensor must match) and checks the hash, so a stream can name exactly the weights it
needs. No pickle anywhere.

Tiers are looked up in the shipped ``nwc/weights`` folder and in the folders listed in the
``NWC_WEIGHTS`` environment variable (``os.pathsep``-separated), user folders first.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save_file

from . import tierfile
from .cascade import Cascade, CascadeConfig
from .catalog import SHIPPED_DIR, find  # noqa: F401 - SHIPPED_DIR: where shipped tiers live
from .entropy import CodeTables
from .framing import Framing
from .model import NWCConfig
from .tierfile import TierError  # noqa: F401 - re-exported: callers catch it from here


@dataclass
class Tier:
    """Everything the codec needs to code one bitrate tier."""

    name: str
    sample_rate: int
    framing: Framing
    config: CascadeConfig
    model: Cascade
    tables: list[CodeTables]            # one per stage (= bitstream layer)
    lsf_tables: CodeTables | None = None
    meta: dict = field(default_factory=dict)
    weights_sha256: str = ""
    legacy: bool = False                # format-1 tier: keep its original stream hash

    @property
    def layers(self) -> int:
        return self.config.stages

    @property
    def lpc(self) -> bool:
        return self.config.lpc

    def layer_kbps(self) -> list[float | None]:
        """Measured real bitrate of each layer prefix (1..layers) on the dev set."""
        return tierfile.layer_kbps(self.meta, self.layers)

    @property
    def model_id(self) -> str:
        return f"nwc-{self.name}"

    @property
    def hash(self) -> str:
        """Identity of weights + tables + framing, as written into stream headers."""
        return self.file().hash

    @property
    def symbols_per_second(self) -> float:
        steps = self.model.code_steps * self.model.symbol_channels
        return steps * self.sample_rate / self.framing.hop

    @property
    def kbps(self) -> float | None:
        """Measured real bitrate on the dev set, if training recorded one."""
        return self.meta.get("dev", {}).get("kbps")

    def file(self, path: Path | None = None) -> tierfile.TierFile:
        """The tier file describing this tier (as ``save`` writes it)."""
        return tierfile.TierFile(
            self.name, self.sample_rate, self.framing, self.config.to_dict(),
            [t.to_list() for t in self.tables], self.weights_sha256,
            None if self.lsf_tables is None else self.lsf_tables.to_list(), self.meta,
            self.legacy, path)

    def save(self, stem: Path, extra: dict | None = None) -> None:
        """Write ``stem.safetensors`` and ``stem.json`` (atomically, via temp files)."""
        stem = Path(stem)
        stem.parent.mkdir(parents=True, exist_ok=True)
        tmp = stem.with_suffix(".safetensors.tmp")
        self.legacy = False  # saving always writes the current format
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(tmp))
        self.weights_sha256 = hashlib.sha256(tmp.read_bytes()).hexdigest()
        if extra:
            self.meta.update(extra)
        tierfile.write(stem, self.file(), tmp)


def build(name: str, sample_rate: int, framing: Framing, config: CascadeConfig | NWCConfig,
          tables: list[CodeTables] | CodeTables, state: dict | None = None,
          meta: dict | None = None, lsf_tables: CodeTables | None = None) -> Tier:
    """Assemble a tier from parts (used by training and tests).

    A bare ``NWCConfig`` with one table set builds a one-stage cascade; its state dict may use
    the single module's key names (as format-1 files do).
    """
    if isinstance(config, NWCConfig):
        config = CascadeConfig(nwc=config)
    if isinstance(tables, CodeTables):
        tables = [tables]
    if len(tables) != config.stages:
        raise ValueError(f"{config.stages} stages but {len(tables)} code tables")
    if config.lpc != (lsf_tables is not None):
        raise ValueError("LSF code tables are needed exactly when the tier has LPC")
    model = Cascade(config)
    if state is not None:
        if not any(k.startswith("stages.") for k in state):
            state = {f"stages.0.{k}": v for k, v in state.items()}
        model.load_state_dict(state, strict=True)
    model.eval()
    return Tier(name, sample_rate, framing, config, model, list(tables), lsf_tables,
                dict(meta or {}))


def load_path(json_path: Path) -> Tier:
    """Load one tier from its JSON file; checks the format, the hash and every tensor."""
    tf = tierfile.read(Path(json_path))
    raw = tierfile.check_weights(tf)
    try:
        config, tables, lsf = tierfile.coding_parts(tf)
        tier = build(tf.name, tf.sample_rate, tf.framing, config, tables, state=load_tensors(raw),
                     meta=tf.meta, lsf_tables=lsf)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise TierError(f"tier {tf.name!r} is damaged: {e}") from None
    tier.weights_sha256 = tf.weights_sha256
    tier.legacy = tf.legacy
    return tier


_CACHE: dict[tuple[str, str | None], Tier] = {}


def load(name: str, weights_hash: str | None = None) -> Tier:
    """Load an installed tier by name (cached per process); with a stream's
    ``weights_hash``, the version that wrote it (``catalog.find``)."""
    key = (name, weights_hash)
    if key not in _CACHE:
        _CACHE[key] = load_path(find(name, weights_hash))
    return _CACHE[key]


def torch_threads(n: int | None) -> None:
    """Limit torch's intra-op threads (one is fastest for these small models)."""
    if n:
        torch.set_num_threads(n)
