"""Shared fixtures: a tiny random-initialised tier installed under NWC_WEIGHTS, synthetic WAVs.

The tier is deliberately minute (8 wide channels, 2 code channels, 7 levels) so every test
that codes audio runs in milliseconds; its code tables come from the real quantizer symbols of
a synthetic speech-like signal, so its streams have realistic, varied symbol statistics.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

TIER_NAME = "tiny"
TINY_CONFIG = {"channels": 8, "narrow": 4, "code_channels": 2, "levels": 7}

# Busy 2-core machine: one intra-op thread is both fastest and deterministic for tiny models.
torch.set_num_threads(1)


def speech_like(seconds: float, rate: int = 16000, channels: int = 1, seed: int = 0,
                level: float = 0.3) -> np.ndarray:
    """Harmonic tones with a gliding pitch, syllable-rate AM and a little noise: (n, channels)."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    out = np.zeros((n, channels), dtype=np.float32)
    if n == 0:
        return out
    for c in range(channels):
        f0 = rng.uniform(100, 220) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
        phase = 2 * np.pi * np.cumsum(f0) / rate
        x = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k
                for k in range(1, 12) if k * f0.max() < rate / 2)
        am = 0.55 + 0.45 * np.sin(2 * np.pi * rng.uniform(3, 6) * t + rng.uniform(0, 6))
        x = x * am + 0.05 * rng.standard_normal(n)
        out[:, c] = level * x / max(np.abs(x).max(), 1e-9)
    return out


def write_wav(path: Path, seconds: float = 1.0, rate: int = 16000, channels: int = 1,
              seed: int = 0, subtype: str = "PCM_16", data: np.ndarray | None = None) -> Path:
    """Write a speech-like (or the given) signal as a WAV file and return its path."""
    x = speech_like(seconds, rate, channels, seed) if data is None else data
    sf.write(str(path), x, rate, subtype=subtype, format="WAV")
    return Path(path)


def build_tiny_tier(name: str = TIER_NAME, seed: int = 0):
    """A random-initialised tiny tier whose tables fit its own symbols on speech-like audio."""
    from nwc.codec import entropy
    from nwc.codec.framing import Framing, split_frames
    from nwc.codec.gain import gain_code, gain_value
    from nwc.codec.model import NWC, NWCConfig
    from nwc.codec.quantize import channel_histogram
    from nwc.codec.tier import build

    torch.manual_seed(seed)
    cfg = NWCConfig(**TINY_CONFIG)
    model = NWC(cfg).eval()
    with torch.no_grad():  # spread the latents over several quantizer levels
        model.encoder[-1].weight.mul_(16.0)
        model.encoder[-1].bias.zero_()
    framing = Framing()
    x = speech_like(4.0, 16000, 1, seed=seed + 100)[:, 0]
    span = framing.packet_span(framing.packet_frames)
    hist = np.zeros((cfg.code_channels, model.quantizer.n_symbols), dtype=np.int64)
    for start in range(0, x.shape[0] - span, framing.packet_hop):
        seg = x[start:start + span]
        seg = seg / gain_value(gain_code(seg))
        frames = split_frames(seg, framing, framing.packet_frames)
        with torch.inference_mode():
            lat = model.encode(torch.from_numpy(frames.astype(np.float32))).numpy()
        hist += channel_histogram(model.quantizer.to_symbols(lat), model.quantizer.n_symbols)
    tables = entropy.tables_from_histogram(hist)
    return build(name, 16000, framing, cfg, tables, state=model.state_dict(),
                 meta={"dev": {"kbps": 1.0}, "target_kbps": 1.0})


LPC_TIER_NAME = "tiny-lpc"


def build_tiny_lpc_tier(name: str = LPC_TIER_NAME, seed: int = 1):
    """A random-initialised two-layer LPC cascade with tables fit to its own symbols."""
    return build_tiny_cascade(name, seed, lpc=True,
                              meta={"dev": {"kbps": 3.0},
                                    "dev_layers": [{"kbps": 2.0}, {"kbps": 3.0}],
                                    "target_kbps": 3.0})


def build_tiny_cascade(name: str, seed: int, lpc: bool = False, meta: dict | None = None):
    """A random-initialised two-stage tiny cascade with tables fit to its own symbols."""
    from nwc.codec.cascade import Cascade, CascadeConfig
    from nwc.codec.framing import Framing
    from nwc.codec.model import NWCConfig
    from nwc.codec.tier import build
    from nwc.train.data import PacketSampler
    from nwc.train.export import code_tables

    torch.manual_seed(seed)
    cfg = CascadeConfig(nwc=NWCConfig(**TINY_CONFIG), stages=2, lpc=lpc)
    model = Cascade(cfg).eval()
    with torch.no_grad():
        for stage in model.stages:
            stage.encoder[-1].weight.mul_(16.0)
            stage.encoder[-1].bias.zero_()
    framing = Framing()
    sampler = PacketSampler([speech_like(4.0, 16000, 1, seed=seed + 100)[:, 0]], framing)
    tables, lsf_tables = code_tables(model, sampler, torch.device("cpu"), 16000, n_packets=32)
    return build(name, 16000, framing, cfg, tables, state=model.state_dict(),
                 lsf_tables=lsf_tables, meta=meta)


def reference_decode(tier, packets, channels: int, total: int,
                     per_packet: Callable[[np.ndarray, object], np.ndarray] | None = None
                     ) -> np.ndarray:
    """Decode by the book: every frame of every audio packet (``per_packet(frames, packet)``
    may rework them, e.g. M/S back to L/R), then one flat-topped overlap-add."""
    from nwc.codec import api
    from nwc.formats.container import AUDIO

    f = tier.framing
    parts = []
    for p in packets:
        if p.kind != AUDIO:
            continue
        n = f.frames_for(p.granule - p.seq * f.packet_hop)
        frames = api.decode_payload(tier, p.side, p.layers, channels, n)[0]
        parts.append(frames if per_packet is None else per_packet(frames, p))
    frames = np.concatenate(parts, axis=1)
    n = frames.shape[1]
    out = np.zeros((channels, f.packet_span(n)), np.float32)
    for j in range(n):
        out[:, j * f.hop: j * f.hop + f.frame] += frames[:, j] * f.window(j == 0, j == n - 1)
    return out[:, :total].T


@pytest.fixture(scope="module")
def quality():
    """bench/quality.py, the bench package's module."""
    from bench import quality as q

    return q


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder holding the installed tiny tier; NWC_WEIGHTS points at it for the session."""
    from nwc.codec import tier as tiers

    d = tmp_path_factory.mktemp("weights")
    build_tiny_tier().save(d / TIER_NAME)
    build_tiny_lpc_tier().save(d / LPC_TIER_NAME)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NWC_WEIGHTS", str(d))
        tiers._CACHE.clear()
        yield d
        tiers._CACHE.clear()


@pytest.fixture(scope="session")
def tiny_tier(weights_dir: Path):
    """The installed tiny tier, loaded through the normal lookup (strict load, hash check)."""
    from nwc.codec import tier as tiers

    return tiers.load(TIER_NAME)


@pytest.fixture(scope="session")
def lpc_tier(weights_dir: Path):
    """The installed two-layer LPC tier."""
    from nwc.codec import tier as tiers

    return tiers.load(LPC_TIER_NAME)


@pytest.fixture
def wav(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``wav("a.wav", seconds=1.0, rate=16000, channels=1, seed=0)`` → path."""

    def make(name: str = "in.wav", **kw) -> Path:
        return write_wav(tmp_path / name, **kw)

    return make


def nwc_env(weights: Path) -> dict[str, str]:
    """Environment for ``python -m nwc`` subprocesses: the tiny tier, no tty progress."""
    env = dict(os.environ)
    env["NWC_WEIGHTS"] = str(weights)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


@pytest.fixture(scope="session")
def run_nwc(weights_dir: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run ``python -m nwc ARGS`` with the tiny tier installed; returns the CompletedProcess."""
    env = nwc_env(weights_dir)

    def run(*args: str | Path, input: bytes | None = None, cwd: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "nwc", *map(str, args)], input=input,
                              capture_output=True, env=env, cwd=cwd, timeout=timeout)

    return run


@pytest.fixture(scope="session")
def run_shell(weights_dir: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run a bash pipeline where ``nwc`` means ``python -m nwc`` with the tiny tier."""
    env = nwc_env(weights_dir)

    def run(script: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
        prelude = f'nwc() {{ "{sys.executable}" -m nwc "$@"; }}\nset -o pipefail\n'
        return subprocess.run(["bash", "-c", prelude + script], capture_output=True, env=env,
                              cwd=cwd, timeout=timeout)

    return run
