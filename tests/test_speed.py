"""The inference fast path (codec/infer.py) changes no code and moves no audio beyond float
noise; the quantizer's NumPy twins match its numba kernels; bench/speed.py runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, nwc_env, speech_like, write_wav
from nwc.codec import infer
from nwc.codec.model import NWC, NWCConfig
from nwc.codec.quantize import (
    nearest_centroid_np,
    nearest_centroid_symbols,
    round_clip_np,
    round_clip_symbols,
)

ROOT = Path(__file__).resolve().parent.parent


def _frames(n: int, seed: int) -> torch.Tensor:
    x = speech_like(n * 480 / 16000 + 0.1, seed=seed)[:, 0] * 3.0
    idx = np.arange(n)[:, None] * 480 + np.arange(512)[None, :]
    return torch.from_numpy(x[idx].astype(np.float32))


def _models() -> list[NWC]:
    torch.manual_seed(3)
    tiny = NWC(NWCConfig(**TINY_CONFIG)).eval()
    full = NWC(NWCConfig()).eval()  # the shipped tiers' architecture, random weights
    paper = NWC(NWCConfig(plan="paper", channels=16, narrow=8, code_channels=2)).eval()
    return [tiny, full, paper]


@pytest.mark.parametrize("threads", [1, 2])
def test_fast_encoder_is_bit_identical(threads: int) -> None:
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    models = _models()
    try:
        for m in models:
            for n, seed in [(16, 0), (16, 1), (7, 2), (1, 3), (32, 4), (16, 5)]:
                fr = _frames(n, seed)
                with torch.no_grad():
                    ref = m.encoder(fr[:, None, :])
                with torch.inference_mode():
                    fast = m.encode(fr)
                assert torch.equal(fast, ref), (m.cfg.plan, n, seed)
    finally:
        torch.set_num_threads(old)
    # The shipped architecture (5-tap depthwise layers) does get the faster kernel.
    full = models[1]
    seen = [ok for conv in full.encoder.modules() if conv in infer._EXACT
            for ok in infer._EXACT[conv].values()]
    assert len(seen) == 4 * 4 and all(seen)  # 4 layers x 4 batch sizes


def test_fast_decoder_matches_within_float_noise() -> None:
    for m in _models():
        for n, seed in [(16, 0), (5, 1)]:
            with torch.no_grad():
                lat = torch.round(m.encoder(_frames(n, seed)[:, None, :]).clamp(-3, 3))
                ref = m.decoder(lat)[:, 0, :]
            with torch.inference_mode():
                fast = m.decode(lat)
                exact = m.decode(lat, exact=True)
            assert fast.shape == ref.shape
            scale = float(ref.abs().max()) + 1.0
            assert float((fast - ref).abs().max()) <= 1e-5 * scale, m.cfg.plan
            assert torch.equal(exact, ref), m.cfg.plan


def test_cascade_closed_loop_codes_unchanged() -> None:
    """A layered encoder's later stages code what the (exact) decoder of earlier ones missed:
    the same symbols as with the modules' own forward."""
    from nwc.codec.cascade import Cascade, CascadeConfig

    torch.manual_seed(5)
    cas = Cascade(CascadeConfig(nwc=NWCConfig(**TINY_CONFIG), stages=3)).eval()
    with torch.no_grad():  # spread the latents over several levels, as conftest's tier does
        for st in cas.stages:
            st.encoder[-1].weight.mul_(16.0)
    fr = _frames(16, 7)
    got = cas.encode_frames(fr.numpy(), 3)
    total, want = torch.zeros_like(fr), []
    with torch.no_grad():
        for k, st in enumerate(cas.stages):
            s = cas.scale(k)
            sym = round_clip_symbols(st.encoder(((fr - total) * s)[:, None, :]).numpy(),
                                     st.quantizer.half)
            want.append(sym)
            y = st.decoder(torch.from_numpy(st.quantizer.from_symbols(sym)))[:, 0, :]
            total = total + y / s
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))


def test_training_path_is_untouched() -> None:
    """With autograd on, encode/decode are the modules' own forward (and differentiable)."""
    m = _models()[0].train()
    fr = _frames(4, 0).requires_grad_(True)
    y = m.decode(m.encode(fr))
    y.sum().backward()
    assert fr.grad is not None and torch.isfinite(fr.grad).all()


def test_coding_path_codes_unchanged_by_fast_path(tiny_tier) -> None:
    """The whole coding path (framing, gains, fast encoder, NumPy rounding) writes the codes
    the modules' own forward and the numba kernel give."""
    from nwc.codec.framing import split_frames
    from nwc.codec.gain import gain_code, gain_value

    stage = getattr(tiny_tier.model, "stages", [tiny_tier.model])[0]
    f = tiny_tier.framing
    x = speech_like(1.2, seed=11)[:, 0]
    seg = x[: f.packet_span(f.packet_frames)]
    seg = seg / gain_value(gain_code(seg))
    fr = torch.from_numpy(split_frames(seg, f, f.packet_frames).astype(np.float32))
    with torch.no_grad():
        ref = round_clip_symbols(stage.encoder(fr[:, None, :]).numpy(), stage.quantizer.half)
    with torch.inference_mode():
        fast = stage.quantizer.to_symbols(stage.encode(fr).numpy())
    assert np.array_equal(fast, ref)


def test_numpy_quantizers_match_numba_kernels() -> None:
    rng = np.random.default_rng(0)
    for i in range(40):
        y = (rng.standard_normal((16, 8, 32)) * rng.uniform(0.1, 30)).astype(np.float32)
        y.flat[rng.integers(0, y.size, 30)] = np.float32(0.5) * rng.integers(-40, 40, 30)
        y.flat[:5] = [np.nan, np.inf, -np.inf, 1e18, -1e18]
        assert np.array_equal(round_clip_np(y, 15), round_clip_symbols(y, 15)), i
        assert np.array_equal(round_clip_np(y, 3), round_clip_symbols(y, 3)), i
        c = np.sort(rng.standard_normal(32).astype(np.float32))
        t = np.tanh(y)
        t.flat[5:8] = [c[3], (c[5] + c[6]) * np.float32(0.5), np.nan]
        assert np.array_equal(nearest_centroid_np(t, c), nearest_centroid_symbols(t, c)), i
        assert np.array_equal(nearest_centroid_np(t, c[:1]), nearest_centroid_symbols(t, c[:1]))


def test_pick_device() -> None:
    assert infer.pick_device("cpu") == torch.device("cpu")
    assert infer.pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(infer.DeviceError, match="unknown device|unsupported device"):
        infer.pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(infer.DeviceError, match="CUDA is not available"):
            infer.pick_device("cuda")


def test_speed_bench_quick(weights_dir, tmp_path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(3):
        write_wav(corpus / f"c{i}.wav", seconds=1.5, seed=i)
    md = tmp_path / "speed.md"
    args = [sys.executable, str(ROOT / "bench" / "speed.py"), "--quick", "--corpus", str(corpus),
            "--tiers", "tiny", "--out-md", str(md)]
    if not (shutil.which("opusenc") and shutil.which("opusdec")):
        args.append("--no-opus")
    env = nwc_env(weights_dir)
    r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = md.read_text()
    assert text == r.stdout
    assert "| nwc tiny | 3 s | 1 |" in text
    assert "algorithmic latency ms" in text and "GFLOP per audio s" in text
    assert "| nwc tiny | 482.0 |" in text  # 16 x 480 + 32 samples at 16 kHz
    assert not [p for p in os.listdir(ROOT) if p.startswith("speech-")]  # nothing in the repo
