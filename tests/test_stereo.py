"""Stereo coding: L/R and M/S per packet, the side channel at its own depth, old streams."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import (
    LPC_TIER_NAME,
    TINY_CONFIG,
    build_tiny_cascade,
    nwc_env,
    reference_decode,
    speech_like,
    write_wav,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nwc.codec import api, lpc
from nwc.codec import stereo as sc
from nwc.codec.api import CodecError, StreamDecoder, StreamEncoder, decode_packets, encode_array
from nwc.formats.container import AUDIO, END, ContainerReader, Packet

FAST = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def mix(seconds: float, rate: int, seed: int, segments: list[tuple[float, float]]) -> np.ndarray:
    """Stereo (n, 2): per equal-length segment, L = a·s + b·n and R = a·s − b·n of a common
    source s and a second one n (b = 0: mono in stereo; a = 0: anti-phase)."""
    src = speech_like(seconds, rate, 2, seed=seed)
    out = np.zeros_like(src)
    edges = np.linspace(0, src.shape[0], len(segments) + 1).astype(int)
    for (a, b), lo, hi in zip(segments, edges[:-1], edges[1:], strict=True):
        out[lo:hi, 0] = a * src[lo:hi, 0] + b * src[lo:hi, 1]
        out[lo:hi, 1] = a * src[lo:hi, 0] - b * src[lo:hi, 1]
    return out


def stream(tier, x: np.ndarray, rate: int, **kw) -> tuple[api.StreamHeader, list[Packet]]:
    enc = StreamEncoder(tier, rate, x.shape[1], kw.pop("layers", None), **kw)
    packets = enc.push(x) + enc.finish()
    h = api.header_for(tier, rate, x.shape[1], x.shape[0])
    end = Packet(kind=END, seq=len(packets), granule=enc.coded_samples, side=b"", layers=[],
                 original_samples=enc.input_samples)
    return h, packets + [end]


def modes(packets: list[Packet]) -> list[int]:
    return [p.side[2] & 1 for p in packets if p.kind == AUDIO]


def to_lr(frames: np.ndarray, packet: Packet) -> np.ndarray:
    """A packet's decoded frames back to L/R, by its side info's stereo mode."""
    return sc.to_lr(frames, sc.split_side(packet.side, 2)[1].mode)


@pytest.fixture(scope="session")
def layered_tier(weights_dir):
    """A two-stage tiny cascade without LPC (tables fit to its own symbols)."""
    return build_tiny_cascade("tiny-layered", seed=3)


# --------------------------------------------------------------------------- side info


@given(mode=st.sampled_from([sc.LR, sc.MS]), side=st.integers(0, sc.MAX_SIDE_LAYERS),
       layers=st.integers(1, 255))
def test_stereo_byte_and_layer_counts(mode: int, side: int, layers: int) -> None:
    info = sc.Stereo(mode, side)
    assert sc.Stereo.from_byte(info.to_byte()) == info
    gains, got = sc.split_side(bytes([7, 9, info.to_byte()]), 2)
    assert gains == bytes([7, 9]) and got == info
    counts = sc.layer_counts(b"\x07\x09", info, layers)
    assert counts[0] == layers and 1 <= counts[1] <= layers
    assert counts[1] == (min(side, layers) if side else layers)
    assert sc.layer_counts(b"\x00\x09", info, layers) == [0, counts[1]]
    assert sc.layer_counts(b"\x07\x00", info, layers) == [layers, 0]
    assert sc.layer_counts(b"\x07\x00\x00", info, layers) == [layers] * 3
    assert sc.layer_counts(b"\x00", info, layers) == [layers]


def test_gain_codes() -> None:
    lr, ms, ms1 = sc.Stereo(sc.LR), sc.Stereo(sc.MS), sc.Stereo(sc.MS, 1)
    assert sc.gain_codes([160, 150], lr) == [160, 150]
    assert sc.gain_codes([160, 150], ms) == [160, 160]      # S at M's noise level
    assert sc.gain_codes([150, 160], ms) == [150, 160]      # ... unless S is louder
    assert sc.gain_codes([160, 150], ms1) == [160, 150]     # fewer layers: its own gain
    assert sc.gain_codes([160, 160 - sc.SKIP_CODES], ms) == [160, sc.SILENT]
    assert sc.gain_codes([160, 160 - sc.SKIP_CODES], ms1) == [160, sc.SILENT]
    assert sc.gain_codes([160, 160 - sc.SKIP_CODES], ms, skip=False) == [160, 160]
    assert sc.gain_codes([160, 161 - sc.SKIP_CODES], ms) == [160, 160]
    assert sc.gain_codes([160 - sc.SKIP_CODES, 160], lr) == [160 - sc.SKIP_CODES, 160]
    assert sc.gain_codes([160, 160 - sc.SKIP_CODES], lr) == [160, 160 - sc.SKIP_CODES]
    assert sc.gain_codes([1, 1], lr) == [sc.SILENT, sc.SILENT]   # digital silence
    assert sc.gain_codes([1, 90], lr) == [sc.SILENT, 90]


def test_split_side_lengths() -> None:
    assert sc.split_side(b"\x80\x81", 2) == (b"\x80\x81", sc.Stereo())   # before stereo coding
    assert sc.split_side(b"\x80", 1) == (b"\x80", sc.Stereo())
    assert sc.split_side(b"\x80\x81\x82", 3) == (b"\x80\x81\x82", sc.Stereo())
    for side, ch in ((b"\x80", 2), (b"\x80" * 4, 2), (b"\x80\x81\x01", 1), (b"", 1)):
        assert sc.split_side(side, ch) is None


@given(st.lists(st.floats(-4, 4, allow_nan=False, width=32), min_size=2, max_size=2))
def test_mid_side_inverts(v: list[float]) -> None:
    x = np.array(v, np.float64)[:, None]
    for mode in (sc.LR, sc.MS):
        np.testing.assert_allclose(sc.to_lr(sc.to_coded(x, mode), mode), x, atol=1e-12)


def test_auto_picks_ms_for_a_quiet_side() -> None:
    s = speech_like(0.1, 16000, 2, seed=1).T
    assert sc.choose(np.stack([s[0], s[0]]), "auto") == sc.MS           # mono in stereo
    assert sc.choose(np.stack([s[0], 0.9 * s[0]]), "auto") == sc.MS
    assert sc.choose(np.stack([s[0], -s[0]]), "auto") == sc.LR           # anti-phase
    assert sc.choose(np.stack([s[0], 0 * s[0]]), "auto") == sc.LR        # hard-panned
    assert sc.choose(np.zeros((2, 100)), "auto") == sc.LR                # silence
    assert sc.choose(np.stack([s[0], -s[0]]), "ms") == sc.MS


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("stereo", ["lr", "ms", "auto"])
def test_round_trip_matches_reference(tiny_tier, stereo: str) -> None:
    x = mix(1.5, 16000, 1, [(0.5, 0.05), (0.1, 0.5), (0.5, 0.0)])
    h, packets = stream(tiny_tier, x, 16000, stereo=stereo)
    audio = [p for p in packets if p.kind == AUDIO]
    assert all(len(p.side) == 3 and p.side[2] >> 1 == 0 for p in audio)
    got = modes(packets)
    assert set(got) == {"lr": {0}, "ms": {1}, "auto": {0, 1}}[stereo]
    y = decode_packets(tiny_tier, h, packets)
    assert y.shape == x.shape
    ref = reference_decode(tiny_tier, audio, 2, x.shape[0], to_lr)
    np.testing.assert_allclose(y, ref, atol=2e-5)
    if stereo == "ms":  # S normalised by M's gain; a silent S (last third) is not coded
        assert all(p.side[1] >= p.side[0] or p.side[1] == sc.SILENT for p in audio)
        assert audio[-1].side[1] == sc.SILENT


def test_ms_codes_a_correlated_pair_in_fewer_bits(tiny_tier) -> None:
    x = mix(2.0, 16000, 2, [(0.5, 0.02)])
    size = {m: sum(len(b) for p in stream(tiny_tier, x, 16000, stereo=m)[1] for b in p.layers)
            for m in ("lr", "ms")}
    assert size["ms"] < 0.8 * size["lr"]


def test_old_two_byte_side_info_decodes_identically(tiny_tier, lpc_tier) -> None:
    """An L/R packet with the stereo byte dropped is what encoders before stereo coding wrote
    (per-channel gains, every layer holding both channels): it decodes to the same samples."""
    for tier in (tiny_tier, lpc_tier):
        x = mix(1.2, 44100, 3, [(0.4, 0.3)])
        h, packets = stream(tier, x, 44100, stereo="lr")
        old = [dataclasses.replace(p, side=p.side[:2]) if p.kind == AUDIO else p
               for p in packets]
        assert all(p.side[2] == 0 for p in packets if p.kind == AUDIO)
        np.testing.assert_array_equal(decode_packets(tier, h, old), decode_packets(tier, h,
                                                                                    packets))


@pytest.mark.parametrize("case", ["mono", "left", "silence"])
def test_silent_channel_carries_no_layers(tiny_tier, case: str) -> None:
    """Mono in stereo costs what mono costs; a silent channel decodes as exact silence."""
    s = speech_like(1.2, 16000, 1, seed=11)
    x = {"mono": np.hstack([s, s]), "left": np.hstack([s, 0 * s]),
         "silence": np.zeros((s.shape[0], 2), np.float32)}[case]
    h, packets = stream(tiny_tier, x, 16000)
    audio = [p for p in packets if p.kind == AUDIO]
    mono = encode_array(tiny_tier, s, 16000)
    want_mode = sc.MS if case == "mono" else sc.LR
    for p, q in zip(audio, mono, strict=True):
        assert p.side[1] == sc.SILENT and p.side[2] == want_mode
        if case == "silence":
            assert p.side[0] == sc.SILENT and p.layers == [b""]
        else:
            assert p.layers == q.layers and p.side[0] == q.side[0]
    y = decode_packets(tiny_tier, h, packets)
    ref = decode_packets(tiny_tier, api.header_for(tiny_tier, 16000, 1, s.shape[0]),
                         mono)[:, 0]
    if case == "mono":
        np.testing.assert_array_equal(y[:, 0], y[:, 1])
        np.testing.assert_array_equal(y[:, 0], ref)
    elif case == "left":
        np.testing.assert_array_equal(y[:, 0], ref)
        assert not y[:, 1].any()
    else:
        assert not y.any()


def test_lpc_tiers_never_send_silent_channels(lpc_tier) -> None:
    s = speech_like(0.8, 16000, 1, seed=12)
    h, packets = stream(lpc_tier, np.hstack([s, s]), 16000, stereo="ms")
    audio = [p for p in packets if p.kind == AUDIO]
    assert all(p.side[1] != sc.SILENT and p.side[2] & 1 for p in audio)
    forged = dataclasses.replace(audio[0], side=audio[0].side[:1] + b"\x00" + audio[0].side[2:])
    with pytest.raises(CodecError, match="silent"):
        api.decode_payload(lpc_tier, forged.side, forged.layers, 2, 16)


def test_bad_stereo_side_info_is_damage(tiny_tier) -> None:
    x = mix(1.0, 16000, 4, [(0.5, 0.1)])
    h, packets = stream(tiny_tier, x, 16000, stereo="ms")
    bad = [dataclasses.replace(p, side=p.side + b"\x00") if p.seq == 0 else p for p in packets]
    dec = StreamDecoder(tiny_tier, h)
    y = np.concatenate([dec.push(p) for p in bad] + [dec.finish()])
    assert y.shape == x.shape and dec.stats.damaged == 1
    with pytest.raises(CodecError, match="expected 3"):
        api.decode_payload(tiny_tier, b"\x80", packets[0].layers, 2, 16)


@FAST
@given(segments=st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=4),
       seed=st.integers(0, 50), chunk=st.integers(1, 9000))
def test_streaming_equals_whole_file_with_switching(tiny_tier, segments, seed: int,
                                                    chunk: int) -> None:
    x = mix(1.3, 44100, seed, segments)
    whole = encode_array(tiny_tier, x, 44100)
    enc = StreamEncoder(tiny_tier, 44100, 2)
    parts: list[Packet] = []
    for i in range(0, x.shape[0], chunk):
        parts += enc.push(x[i:i + chunk])
    assert parts + enc.finish() == whole
    h = api.header_for(tiny_tier, 44100, 2, x.shape[0])
    y = decode_packets(tiny_tier, h, whole)
    assert y.shape == x.shape and np.isfinite(y).all()


@pytest.mark.parametrize("stereo", ["ms", "auto"])
def test_lpc_stereo_is_exact_with_a_lossless_residual(lpc_tier, stereo: str) -> None:
    """With a lossless residual coder the LPC decoder rebuilds the pre-processed input
    exactly in M/S too; auto codes LPC tiers as L/R (they do not switch modes)."""

    class Passthrough(torch.nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner, self.stash = inner, []
            self.lsf, self.code_steps = inner.lsf, inner.code_steps
            self.symbol_channels = TINY_CONFIG["code_channels"]

        def encode_frames(self, frames: np.ndarray, n: int) -> list[np.ndarray]:
            self.stash.append(frames.copy())
            return [np.zeros((frames.shape[0], 2, self.code_steps), np.int32)] * n

        def decode_frames(self, symbols: list[np.ndarray]) -> np.ndarray:
            return self.stash.pop(0)

    tier = dataclasses.replace(lpc_tier, model=Passthrough(lpc_tier.model))
    x = mix(2.5, 16000, 5, [(0.5, 0.05), (0.1, 0.5), (0.5, 0.0), (0.0, 0.5), (0.4, 0.1)])
    h, packets = stream(tier, x, 16000, stereo=stereo, side_layers=2)
    assert set(modes(packets)) == {sc.MS if stereo == "ms" else sc.LR}
    y = decode_packets(tier, h, packets).astype(np.float64)
    assert y.shape == x.shape
    for c in range(2):
        hp = lpc.preprocess(x[:, c].astype(np.float64))
        np.testing.assert_allclose(y[1:, c] - lpc.PREEMPH * y[:-1, c], hp[1:], atol=3e-4)


# --------------------------------------------------------------------------- side layers


@pytest.mark.parametrize("name", ["layered", "lpc"])
def test_side_carries_fewer_layers(layered_tier, lpc_tier, name: str, monkeypatch) -> None:
    tier = layered_tier if name == "layered" else lpc_tier
    x = mix(1.4, 16000, 6, [(0.5, 0.05)])
    f = tier.framing
    h, thin = stream(tier, x, 16000, stereo="ms", side_layers=1)
    assert all(p.side[1] < p.side[0] for p in thin if p.kind == AUDIO)  # S: its own gain
    monkeypatch.setattr(sc, "side_gain", lambda mid, side: side)  # the same gains with 2
    _, full = stream(tier, x, 16000, stereo="ms", side_layers=2)
    for a, b in zip(thin, full, strict=True):
        if a.kind != AUDIO:
            continue
        assert a.side[:2] == b.side[:2] and a.side[2] == (1 << 1) | 1 and b.side[2] == 1
        assert a.layers[0] == b.layers[0] and len(a.layers[1]) < len(b.layers[1])
        n = f.frames_for(a.granule - a.seq * f.packet_hop)
        assert api.layer_rows(a.side, 2, n, 2) == [2 * n, n]
        assert api.layer_rows(b.side, 2, n, 2) == [2 * n, 2 * n]
        if name == "layered":  # M decodes as before; S as from its base layer alone
            fa = api.decode_payload(tier, a.side, a.layers, 2, n)[0]
            fb = api.decode_payload(tier, b.side, b.layers, 2, n)[0]
            f1 = api.decode_payload(tier, b.side, b.layers[:1], 2, n)[0]
            np.testing.assert_allclose(fa[0], fb[0], atol=1e-6)
            np.testing.assert_allclose(fa[1], f1[1], atol=1e-6)
    y = decode_packets(tier, h, thin)
    assert y.shape == x.shape and np.isfinite(y).all()
    # Ideal bits of each layer parse with the rows the side info gives.
    for p in thin[:-1]:
        n = f.frames_for(p.granule - p.seq * f.packet_hop)
        rows = api.layer_rows(p.side, 2, n, len(p.layers))
        assert all(api.layer_ideal_bits(tier, k, b, r) > 0
                   for k, (b, r) in enumerate(zip(p.layers, rows, strict=True)))


@pytest.mark.parametrize("stereo", ["ms", "auto"])
def test_truncated_stereo_equals_direct_encode(layered_tier, stereo: str) -> None:
    x = mix(1.6, 44100, 7, [(0.5, 0.05), (0.1, 0.5)])
    full = encode_array(layered_tier, x, 44100, stereo=stereo, side_layers=1)
    one = encode_array(layered_tier, x, 44100, layers=1, stereo=stereo, side_layers=1)
    assert [dataclasses.replace(p, layers=p.layers[:1]) for p in full] == one
    h = api.header_for(layered_tier, 44100, 2, x.shape[0], layers=1)
    assert decode_packets(layered_tier, h, full).shape == x.shape


def test_encoder_validates_stereo_options(layered_tier, tiny_tier) -> None:
    with pytest.raises(CodecError, match="stereo"):
        StreamEncoder(tiny_tier, 16000, 2, stereo="wide")
    for bad in (0, 3):
        with pytest.raises(CodecError, match="side layers"):
            StreamEncoder(layered_tier, 16000, 2, side_layers=bad)
    assert [sc.default_side_layers(n) for n in range(1, 7)] == [1, 1, 2, 2, 3, 3]


def test_mono_and_multichannel_stay_unchanged(tiny_tier) -> None:
    x = speech_like(0.7, 16000, 3, seed=8)
    for ch in (1, 3):
        packets = encode_array(tiny_tier, x[:, :ch], 16000, stereo="ms", side_layers=1)
        assert all(len(p.side) == ch for p in packets)


# --------------------------------------------------------------------------- CLI


@pytest.fixture(scope="session")
def layered_env(layered_tier, weights_dir, tmp_path_factory) -> dict[str, str]:
    """Environment for CLI runs that also see the two-layer tier (in a folder of its own, so
    the session's shared tier folder stays as other tests expect it)."""
    d = tmp_path_factory.mktemp("layered")
    layered_tier.save(d / layered_tier.name)
    env = nwc_env(weights_dir)
    env["NWC_WEIGHTS"] = f"{d}{os.pathsep}{weights_dir}"
    return env


def sh(env: dict[str, str], script: str, cwd) -> subprocess.CompletedProcess:
    prelude = f'nwc() {{ "{sys.executable}" -m nwc "$@"; }}\nset -eo pipefail\n'
    return subprocess.run(["bash", "-c", prelude + script], capture_output=True, env=env,
                          cwd=cwd, timeout=300)


@pytest.mark.parametrize("tier,stereo", [("tiny-layered", "auto"), (LPC_TIER_NAME, "ms")])
def test_cli_stereo_layered_truncate_and_pipes(layered_env, tmp_path, tier: str,
                                               stereo: str) -> None:
    x = mix(1.3, 44100, 9, [(0.5, 0.05), (0.1, 0.5)])
    write_wav(tmp_path / "in.wav", rate=44100, data=x)
    enc = f"nwc encode in.wav -t {tier} --stereo {stereo} --side-layers 1 -q"
    r = sh(layered_env, f"{enc} full.nwc\n{enc} one.nwc --layers 1\n"
           "nwc truncate full.nwc cut.nwc --layers 1 -q\n"
           "nwc info full.nwc --json > info.json\nnwc info full.nwc > info.txt\n"
           f"{enc} - | nwc truncate - - -l 1 -q | nwc decode - piped.wav -q\n"
           "cat full.nwc | nwc decode - - -q > full.wav\nnwc decode one.nwc direct.wav -q",
           tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "cut.nwc").read_bytes() == (tmp_path / "one.nwc").read_bytes()
    assert (tmp_path / "piped.wav").read_bytes() == (tmp_path / "direct.wav").read_bytes()
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["channels"] == 2 and info["num_layers"] == 2
    assert info["stereo"]["ms_packets"] >= 1 and info["stereo"]["side_layers"] == [1]
    assert (info["stereo"]["lr_packets"] >= 1) == (stereo == "auto")
    assert "stereo:      M/S in" in (tmp_path / "info.txt").read_text()
    for name in ("direct.wav", "full.wav"):
        y, rate = sf.read(str(tmp_path / name))
        assert y.shape == x.shape and rate == 44100
    with open(tmp_path / "cut.nwc", "rb") as f:
        audio = [p for p in ContainerReader(f) if p.kind == AUDIO]
    assert all(len(p.layers) == 1 and len(p.side) == 3 for p in audio)


def test_cli_stereo_options(run_nwc, tmp_path) -> None:
    x = mix(0.8, 16000, 10, [(0.5, 0.05)])
    write_wav(tmp_path / "s.wav", data=x)
    write_wav(tmp_path / "m.wav", seconds=0.5)
    for mode, want in (("lr", 0), ("ms", 2)):
        out = tmp_path / f"{mode}.nwc"
        assert run_nwc("encode", tmp_path / "s.wav", out, "--stereo", mode, "-t", "tiny",
                       "-q").returncode == 0
        assert json.loads(run_nwc("info", out, "--json").stdout)["stereo"]["ms_packets"] == want
    assert run_nwc("encode", tmp_path / "m.wav", tmp_path / "m.nwc", "--stereo", "ms", "-t",
                   "tiny", "-q").returncode == 0
    d = json.loads(run_nwc("info", tmp_path / "m.nwc", "--json").stdout)
    assert d["channels"] == 1 and "stereo" not in d
    for args, code in ((("--stereo", "wide"), 2), (("--side-layers", "2"), 2),
                       (("--side-layers", "0"), 2)):
        r = run_nwc("encode", tmp_path / "s.wav", tmp_path / "bad.nwc", "-t", "tiny", *args)
        assert r.returncode == code and b"Traceback" not in r.stderr
        assert not (tmp_path / "bad.nwc").exists()
