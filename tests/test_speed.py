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
                    fast = infer.encode(m, fr)
                assert torch.equal(fast, ref), (m.cfg.plan, n, seed)
    finally:
        torch.set_num_threads(old)
    # Every depthwise layer of the shipped architecture was probed at each batch size; where
    # oneDNN's channels-last kernel sums in conv1d's order (seen on AVX-512 machines; not on
    # an AVX2-only EPYC, where the probe keeps conv1d) it gets the faster kernel.
    full = models[1]
    seen = [ok for conv in full.encoder.modules() if conv in infer._EXACT
            for ok in infer._EXACT[conv].values()]
    assert len(seen) == 4 * 4  # 4 layers x 4 batch sizes
    if _has_avx512():
        assert all(seen)


def _has_avx512() -> bool:
    try:
        flags = next((line for line in open("/proc/cpuinfo") if line.startswith("flags")), "")
    except OSError:
        return False
    return "avx512f" in flags.split()


def test_fast_decoder_matches_within_float_noise() -> None:
    for m in _models():
        for n, seed in [(16, 0), (5, 1)]:
            with torch.no_grad():
                lat = torch.round(m.encoder(_frames(n, seed)[:, None, :]).clamp(-3, 3))
                ref = m.decoder(lat)[:, 0, :]
            with torch.inference_mode():
                fast = infer.decode(m, lat)
                exact = infer.decode(m, lat, exact=True)
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
                                     st.quantizer.max_level)
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
        ref = round_clip_symbols(stage.encoder(fr[:, None, :]).numpy(), stage.quantizer.max_level)
    with torch.inference_mode():
        fast = stage.quantizer.to_symbols(infer.encode(stage, fr).numpy())
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
    r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = md.read_text()
    assert text == r.stdout
    assert "| nwc tiny | 3 s | 1 |" in text
    assert "algorithmic latency ms" in text and "GFLOP per audio s" in text
    assert "| nwc tiny | 482.0 |" in text  # 16 x 480 + 32 samples at 16 kHz
    assert not [p for p in os.listdir(ROOT) if p.startswith("speech-")]  # nothing in the repo
    # The all-systems table: every available anchor next to nwc, with its ratio to Opus.
    assert "| system (1 thread) | kbps | audio |" in text
    assert text.count("| nwc tiny |") >= 3  # speed, all systems, latency tables
    if shutil.which("opusenc") and shutil.which("opusdec"):
        assert "| Opus VBR 16k | 16 | 3 s |" in text
        assert "| 1.00 | 1.00 |" in text  # Opus against itself
    speed = _speed_module()
    for a in speed.quality.ALL_ANCHORS:
        if a != "opus" and speed.quality.anchor_unavailable(a) is None:
            s = speed.pick_rungs(speed.quality.anchor_systems(a), [16.0])[0]
            assert f"| {s.label} | {s.nominal_kbps:g} | 3 s |" in text, a


# --------------------------------------------------------------------------------------
# bench/speed.py's anchor timing (bench/quality.py's systems), on tiny clips


def _speed_module():
    """bench/speed.py, the bench package's module."""
    old_policy = os.environ.get("OMP_WAIT_POLICY")
    try:
        from bench import speed
    finally:
        if old_policy is None:  # speed.py sets it for its own runs, not for this process
            os.environ.pop("OMP_WAIT_POLICY", None)
    return speed


def test_anchor_choice_and_option_parsing() -> None:
    speed = _speed_module()
    q = speed.quality

    def picked(anchor: str) -> list[str]:
        return [s.mode for s in speed.pick_rungs(q.anchor_systems(anchor), [16.0, 24.0])]

    assert picked("amrwb") == ["mode 4", "mode 8"]  # 15.85 and 23.85 kbps
    assert picked("opus") == ["VBR 16k", "VBR 24k"]
    assert picked("speex") == ["q4", "q6"]  # 12.8 and 20.6: nothing nearer on the ladder
    assert picked("codec2") == ["3200"]  # the top of its ladder, once
    assert picked("g722") == ["64k"]
    assert picked("lc3") == ["10 ms 16k", "10 ms 24k"]
    assert speed.parse_anchors("all") == list(q.ALL_ANCHORS)
    assert speed.parse_anchors("none") == []
    assert speed.parse_anchors("MP3, opus,mp3") == ["mp3", "opus"]
    assert speed.parse_anchors("all", no_opus=True) == [a for a in q.ALL_ANCHORS if a != "opus"]
    with pytest.raises(SystemExit, match="unknown anchor"):
        speed.parse_anchors("opus,flac")


def test_peak_rss_parsing(tmp_path) -> None:
    speed = _speed_module()
    rss = speed.PeakRSS()
    # What /usr/bin/time -f %M -o FILE writes for a command that failed, then for one that ran.
    Path(rss.path).write_text("Command exited with non-zero status 1\n2048\n")
    assert rss.mb() == 2.0 and not Path(rss.path).exists()
    empty = speed.PeakRSS()
    assert np.isnan(empty.mb())


@pytest.mark.parametrize("anchor", ["amrwb", "opus", "speex", "codec2", "mp3", "lc3", "aac",
                                    "g722", "vorbis"])
def test_anchor_timing_on_a_tiny_clip(tmp_path, anchor: str) -> None:
    speed = _speed_module()
    why = speed.quality.anchor_unavailable(anchor)
    if why:
        pytest.skip(why)
    x = speech_like(1.0, seed=4)[:, 0]
    pcm = speed.pcm16(x)
    wav = tmp_path / "in.wav"
    write_wav(wav, data=pcm)
    (system,) = speed.pick_rungs(speed.quality.anchor_systems(anchor), [16.0])
    r = speed.anchor_run(system, wav, pcm, tmp_path / "work", reps=1)
    for step in ("enc", "dec"):
        assert r[step].rc == 0 and r[step].wall_s > 0
        if speed.TIME:  # peak RSS parsed from /usr/bin/time
            assert 0.5 < r[step].rss_mb < 2000, (step, r[step].rss_mb)
    in_process = anchor == "amrwb"  # ctypes in this process: also timed warm
    assert (r["warm_enc"] is not None) == in_process == (r["warm_dec"] is not None)
    assert r["bytes"] == r["stream"].stat().st_size > 0
    assert 0.3 * system.nominal_kbps < r["bytes"] * 8 / 1000 < 8 * system.nominal_kbps
    # Its row in the all-systems table, against a fake Opus run at half its speed.
    opus = {16.0: dict(r, system=speed.quality.opus_system(16), warm_enc=None, warm_dec=None,
                       enc=speed.Proc(2 * r["enc"].wall_s, 3.0, 0),
                       dec=speed.Proc(2 * r["dec"].wall_s, 3.0, 0))}
    opus_row, row = speed.all_systems_rows("1 s", 1.0, [], opus, [r])
    assert opus_row[0] == "Opus VBR 16k" and opus_row[10:] == ["1.00", "1.00"]
    assert row[:3] == [system.label, f"{system.nominal_kbps:g}", "1 s"]
    assert len(row) == 12
    assert row[10].startswith("2.00") and row[11].startswith("2.00")
    assert ("(warm " in row[10]) == in_process
    (row,) = speed.all_systems_rows("1 s", 1.0, [], {}, [r])  # no Opus in the run
    assert row[10:] == ["–", "–"]
