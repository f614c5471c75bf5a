"""Which engine runs a tier's networks, and loading a tier for the NumPy one (no torch).

``load(name, device)`` gives what ``api.StreamEncoder``/``StreamDecoder`` need: a tier whose
``model`` has ``encode_frames``/``decode_frames``. On the CPU (``auto`` or ``cpu``) that is
``NpTier``, read from the tier's JSON and safetensors with NumPy alone: importing torch costs
seconds and hundreds of MB, the coding itself milliseconds. ``cuda`` (or ``NWC_ENGINE=torch``,
the torch engine on the CPU, for comparisons) loads ``tier.Tier`` and so imports torch.
"""

from __future__ import annotations

import ctypes
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import catalog, tierfile
from .config import CascadeConfig
from .entropy import CodeTables
from .framing import Framing
from .npengine import NpCascade
from .tierfile import TierError

TORCH_HINT = 'pip install "nwc[train]"'


@dataclass
class NpTier:
    """A tier for the NumPy engine: the attributes of ``tier.Tier`` the codec reads."""

    name: str
    sample_rate: int
    framing: Framing
    config: CascadeConfig
    model: NpCascade
    tables: list[CodeTables]
    lsf_tables: CodeTables | None
    hash: str
    weights_sha256: str
    meta: dict = field(default_factory=dict)

    @property
    def layers(self) -> int:
        return self.config.stages

    @property
    def lpc(self) -> bool:
        return self.config.lpc

    @property
    def model_id(self) -> str:
        return f"nwc-{self.name}"

    def layer_kbps(self) -> list[float | None]:
        return tierfile.layer_kbps(self.meta, self.layers)


def load_path(json_path: Path) -> NpTier:
    """Load one tier from its JSON for the NumPy engine; checks the hash and every tensor."""
    from safetensors.numpy import load as load_bytes

    tf = tierfile.read(Path(json_path))
    raw = tierfile.check_weights(tf)
    try:
        config, tables, lsf = tierfile.coding_parts(tf)
        state = {k: np.asarray(v, np.float32) for k, v in load_bytes(raw).items()}
        model = NpCascade(config, state)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise TierError(f"tier {tf.name!r} is damaged: {e}") from None
    return NpTier(tf.name, tf.sample_rate, tf.framing, config, model, tables, lsf, tf.hash,
                  tf.weights_sha256, dict(tf.meta))


_CACHE: dict[tuple[str, str | None], NpTier] = {}


def load_numpy(name: str, weights_hash: str | None = None) -> NpTier:
    """Load an installed tier by name for the NumPy engine (cached per process); with a
    stream's ``weights_hash``, the version that wrote it (``catalog.find``)."""
    key = (name, weights_hash)
    if key not in _CACHE:
        _CACHE[key] = load_path(catalog.find(name, weights_hash))
    return _CACHE[key]


ENGINE_ENV = "NWC_ENGINE"   # "torch": the torch engine on the CPU too (comparisons, benches)


def uses_torch(device: str) -> bool:
    """Whether ``device`` (auto, cpu, cuda, cuda:N) runs the torch engine.

    ``auto`` is the NumPy engine on the CPU: deciding whether a GPU exists would import torch
    (seconds), more than these small networks take to code minutes of audio on one core.
    ``NWC_ENGINE=torch`` in the environment puts ``auto`` and ``cpu`` on torch as well.
    """
    d = device.strip().lower()
    if d in ("auto", "cpu"):
        return os.environ.get(ENGINE_ENV, "").strip().lower() == "torch"
    if re.fullmatch(r"cuda(:\d+)?", d):
        return True
    raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")


def torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def load(name: str, device: str = "auto", weights_hash: str | None = None):
    """The tier ``name`` on the engine ``device`` selects (``uses_torch``)."""
    if not uses_torch(device):
        return load_numpy(name, weights_hash)
    if not torch_available():
        raise TierError(f"--device {device} needs torch, which is not installed: "
                        f"{TORCH_HINT}, or use --device cpu")
    from . import tier as tiers

    return tiers.load(name, weights_hash)


def keep_freed_memory() -> None:
    """Make glibc keep freed memory for reuse instead of handing it back after every packet.

    Each packet allocates and frees a few MB of activations; by default glibc serves blocks
    over 128 KiB with fresh ``mmap`` pages and trims the heap on ``free``, so every packet
    page-faults them back in (measured ~1 ms a packet with torch). Blocks under 32 MiB now
    come from the heap and up to 256 MiB of free heap stays mapped. A process-wide setting,
    made by the CLI; without glibc it does nothing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    mallopt(m_mmap_threshold, 32 << 20)
    mallopt(m_trim_threshold, 256 << 20)


_BLAS_SETTERS = ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                 "openblas_set_num_threads", "MKL_Set_Num_Threads")


def blas_threads(n: int) -> bool:
    """Limit the BLAS behind NumPy's matmuls to ``n`` threads (the engine's ``--threads``).

    OpenBLAS starts one thread per core; on these small per-packet matmuls extra threads
    mostly spin against other work. Finds the loaded BLAS through /proc/self/maps (as
    threadpoolctl does) and calls its setter; returns False where there is none (non-Linux,
    another BLAS), which leaves NumPy's default.
    """
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "blas" in line.lower() or "mkl" in line}
    except OSError:
        return False
    for path in sorted(libs):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _BLAS_SETTERS:
            setter = getattr(lib, name, None)
            if setter is not None:
                setter(int(n))
                return True
    return False
