"""Tests of the codec library: model plans, quantizers, rate control, range coder, framing,
streaming encode/decode, exact lengths, and tier storage and identity."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, reference_decode, speech_like
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nwc.codec import api, catalog, entropy, tierfile
from nwc.codec import tier as tiers
from nwc.codec.api import CodecError, StreamDecoder, StreamEncoder, decode_packets, encode_array
from nwc.codec.framing import Framing, OverlapAdd, split_frames
from nwc.codec.model import NWC, NWCConfig
from nwc.codec.quantize import (
    NoiseQuantizer,
    SoftmaxQuantizer,
    channel_histogram,
    round_clip_symbols,
)
from nwc.codec.tier import TierError
from nwc.formats.container import AUDIO, END, Packet
from nwc.train.rate import RateController

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def end_packet(packets: list[Packet], coded: int, original: int) -> Packet:
    return Packet(kind=END, seq=len(packets), granule=coded, side=b"", layers=[],
                  original_samples=original)


def encode_stream(tier, x: np.ndarray, rate: int) -> tuple[api.StreamHeader, list[Packet]]:
    """Header and packets (END included) exactly as the CLI writes them."""
    x = x if x.ndim == 2 else x[:, None]
    enc = StreamEncoder(tier, rate, x.shape[1])
    packets = enc.push(x) + enc.finish()
    h = api.header_for(tier, rate, x.shape[1], x.shape[0])
    return h, packets + [end_packet(packets, enc.coded_samples, enc.input_samples)]


# --------------------------------------------------------------------------- model


@pytest.mark.parametrize("plan,steps,code_channels", [
    ("fast", 32, 2), ("fast", 32, 8), ("paper", 256, 1), ("paper", 256, 2), ("paper", 256, 8)])
def test_layer_plan_shapes(plan: str, steps: int, code_channels: int) -> None:
    torch.manual_seed(0)
    cfg = NWCConfig(plan=plan, **{**TINY_CONFIG, "channels": 12, "code_channels": code_channels})
    m = NWC(cfg)
    assert m.code_steps == steps
    frames = torch.randn(3, 512)
    lat = m.encode(frames)
    assert lat.shape == (3, cfg.code_channels, steps)
    assert m.decode(lat).shape == (3, 512)
    rec, bits, penalty, y = m(frames, quantize=True)
    assert rec.shape == (3, 512) and y.shape == lat.shape
    b = float(bits.detach())
    assert torch.isfinite(rec).all() and math.isfinite(b) and b > 0
    (rec.pow(2).mean() + bits).backward()
    grads = [p.grad for p in m.encoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


def test_unknown_plan_and_quantizer_are_refused() -> None:
    with pytest.raises(ValueError, match="plan"):
        NWC(NWCConfig(plan="nope", **TINY_CONFIG))
    with pytest.raises(ValueError, match="quantizer"):
        NWC(NWCConfig(quantizer="nope", **TINY_CONFIG))


# --------------------------------------------------------------------------- quantizers


def test_noise_quantizer_rate_gradient_stays_finite_in_the_far_tails() -> None:
    # A channel whose scale has shrunk to its floor, with latents 15 levels out: the mass
    # underflows (the rate saturates at its clamp) and the gradient must be finite (0), not
    # the NaN that the unused branch of the where once gave (a long music run died of it).
    q = NoiseQuantizer(2, half=15)
    with torch.no_grad():
        q.log_scale.fill_(-4.0)
    y = torch.tensor([[[0.0, 0.3, 2.0, 15.4]], [[-15.4, -6.0, 0.1, 9.0]]]).reshape(1, 2, 4)
    y.requires_grad_()
    bits = q._bits(y).mean()
    bits.backward()
    assert math.isfinite(float(bits.detach())) and torch.isfinite(y.grad).all()
    assert torch.isfinite(q.log_scale.grad).all() and torch.isfinite(q.loc.grad).all()


def test_noise_quantizer_training_and_inference() -> None:
    torch.manual_seed(1)
    q = NoiseQuantizer(3, half=3)
    y = (torch.randn(4, 3, 20) * 3).requires_grad_()
    hard, bits, penalty = q(y, quantize=True)
    expected = torch.round(torch.clamp(y, -3.49, 3.49))
    assert torch.equal(hard.detach(), expected.detach())
    bits, penalty = float(bits.detach()), float(penalty.detach())
    assert math.isfinite(bits) and bits > 0 and penalty == 0
    hard.sum().backward()  # straight-through: gradient 1 inside the clamp range
    inside = y.detach().abs() < 3.49
    assert torch.all(y.grad[inside] == 1)
    soft, bits_soft, _ = q(y.detach(), quantize=False)
    assert torch.equal(soft, torch.clamp(y.detach(), -3.49, 3.49)) and float(bits_soft.detach()) > 0
    assert 0 < float(q.hard_bits(y.detach()).detach()) < 64

    lat = np.random.default_rng(0).normal(0, 3, (5, 3, 17)).astype(np.float32)
    s = q.to_symbols(lat)
    assert s.dtype == np.int32 and s.shape == lat.shape
    assert s.min() >= 0 and s.max() < q.n_symbols == 7
    np.testing.assert_array_equal(q.from_symbols(s), np.clip(np.rint(lat), -3, 3))


def test_round_clip_symbols_maps_non_finite_to_zero() -> None:
    y = np.array([[np.nan, np.inf, -np.inf, 0.4, -9.0, 9.0]], np.float32)
    assert round_clip_symbols(y, 2).tolist() == [[2, 2, 2, 2, 0, 4]]


def test_softmax_quantizer_training_and_inference() -> None:
    torch.manual_seed(2)
    q = SoftmaxQuantizer(2, levels=8)
    with torch.no_grad():  # unsorted centroids: inference must sort them
        q.centroids.copy_(torch.tensor([0.9, -0.8, 0.1, -0.2, 0.5, -0.5, 0.3, 0.0]))
        q.alpha.fill_(-20.0)
    y = torch.randn(4, 2, 16)
    soft, bits, penalty = q(y, quantize=True)
    c = q.centroids.detach()
    assert soft.shape == y.shape
    soft = soft.detach()
    assert float(soft.min()) >= float(c.min()) - 1e-6 and float(soft.max()) <= float(c.max())
    bits, penalty = float(bits.detach()), float(penalty.detach())
    assert math.isfinite(bits) and 0 < bits <= 3 + 1e-6
    assert penalty > 0

    lat = np.random.default_rng(1).normal(0, 2, (6, 2, 16)).astype(np.float32)
    s = q.to_symbols(lat)
    assert s.min() >= 0 and s.max() < q.n_symbols
    grid = np.sort(c.numpy())
    nearest = grid[np.argmin(np.abs(np.tanh(lat)[..., None] - grid), axis=-1)]
    np.testing.assert_array_equal(q.from_symbols(s), nearest)


def test_channel_histogram_matches_bincount() -> None:
    rng = np.random.default_rng(3)
    s = rng.integers(0, 9, (7, 3, 50)).astype(np.int32)
    h = channel_histogram(s, 11)
    assert h.shape == (3, 11)
    for c in range(3):
        np.testing.assert_array_equal(h[c], np.bincount(s[:, c].ravel(), minlength=11))


def test_rate_controller_moves_lambda_toward_target() -> None:
    up = RateController()
    lam0 = up.lam
    for _ in range(50):
        up.update(bits=4.0, target=2.0)
    assert up.lam > lam0
    down = RateController()
    lams = []
    for _ in range(50):
        down.update(bits=1.0, target=2.0)
        lams.append(down.lam)
    assert down.lam < lam0 and all(b <= a for a, b in zip(lams, lams[1:], strict=False))
    for _ in range(20000):  # clipped, never runs away
        down.update(bits=0.0, target=2.0)
    assert down.lam == pytest.approx(math.exp(-12))


# --------------------------------------------------------------------------- range coder


@st.composite
def tables_and_symbols(draw):
    channels = draw(st.integers(1, 4))
    n_sym = draw(st.integers(2, 40))
    freqs = draw(st.lists(st.lists(st.integers(1, 5000), min_size=n_sym, max_size=n_sym),
                          min_size=channels, max_size=channels))
    lead = draw(st.lists(st.integers(0, 3), min_size=0, max_size=2))
    t = draw(st.integers(1, 40))
    shape = (*lead, channels, t)
    seed = draw(st.integers(0, 2**32 - 1))
    symbols = np.random.default_rng(seed).integers(0, n_sym, shape).astype(np.int32)
    return entropy.CodeTables(freqs), symbols


@FAST
@given(tables_and_symbols())
def test_entropy_round_trip(case) -> None:
    tables, symbols = case
    data = entropy.encode(symbols, tables)
    assert len(data) % 4 == 0
    assert entropy.encode(symbols, tables) == data
    out = entropy.decode(data, tables, symbols.shape)
    assert out.shape == symbols.shape
    np.testing.assert_array_equal(out, symbols)


@pytest.mark.parametrize("seed", range(4))
def test_entropy_rate_is_close_to_ideal(seed: int) -> None:
    rng = np.random.default_rng(seed)
    channels, n_sym = int(rng.integers(1, 4)), int(rng.integers(2, 32))
    tables = entropy.CodeTables(rng.integers(1, 2000, (channels, n_sym)))
    p = tables.freqs / tables.freqs.sum(axis=1, keepdims=True)
    symbols = np.stack([rng.choice(n_sym, size=(50, 400), p=p[c]) for c in range(channels)],
                       axis=1).astype(np.int32)
    data = entropy.encode(symbols, tables)
    ideal = tables.ideal_bits(symbols)
    assert abs(8 * len(data) - ideal) <= 0.01 * ideal + 64
    np.testing.assert_array_equal(entropy.decode(data, tables, symbols.shape), symbols)


def test_entropy_golden_bytes() -> None:
    """Pins the exact bytes: any change of coder, model quantization or word order shows."""
    tables = entropy.CodeTables([[1, 2, 3, 10, 3, 2, 1], [5, 1, 1, 1, 1, 1, 20]])
    symbols = (np.arange(36).reshape(2, 2, 9) * 5 % 7).astype(np.int32)
    data = entropy.encode(symbols, tables)
    assert data.hex() == "8e35670aa6a19d1ff57fe898d624585636840f5f"
    np.testing.assert_array_equal(entropy.decode(data, tables, symbols.shape), symbols)
    assert tables.ideal_bits(symbols) == pytest.approx(133.41549068860738)


def test_entropy_decode_rejects_partial_words() -> None:
    tables = entropy.CodeTables([[1, 2, 3]])
    with pytest.raises(entropy.EntropyError):
        entropy.decode(b"\x01\x02\x03", tables, (1, 4))


def test_code_tables_validation_and_histogram_scaling() -> None:
    with pytest.raises(ValueError):
        entropy.CodeTables([[1, 0, 3]])
    with pytest.raises(ValueError):
        entropy.CodeTables([1, 2, 3])
    t = entropy.tables_from_histogram(np.array([[0, 0, 100, 50], [0, 0, 0, 0]]))
    assert (t.freqs >= 1).all() and (t.freqs.sum(axis=1) <= entropy.TABLE_TOTAL).all()
    assert t.freqs[0, 2] > t.freqs[0, 3] > t.freqs[0, 0] == 1


# --------------------------------------------------------------------------- framing


def test_taper_sums_to_one() -> None:
    t = Framing().taper()
    np.testing.assert_allclose(t + t[::-1], 1.0, atol=1e-6)


@FAST
@given(st.integers(1, 20000), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_overlap_add_reconstructs_split_frames(length: int, chunk: int, seed: int) -> None:
    """An identity decoder (frames out = frames in) reconstructs the signal to rounding."""
    f = Framing()
    x = np.random.default_rng(seed).standard_normal(length).astype(np.float32)
    n = f.frames_for(length)
    frames = split_frames(x, f, n)
    assert frames.shape == (n, f.frame) and f.packet_span(n) >= length
    ola = OverlapAdd(f)
    pieces = [ola.push(frames[i:i + chunk], last=i + chunk >= n) for i in range(0, n, chunk)]
    y = np.concatenate(pieces)
    assert y.shape[0] == f.packet_span(n)
    np.testing.assert_allclose(y[:length], x, rtol=0, atol=1e-5)


# --------------------------------------------------------------------------- streaming


def _chunked(tier, x: np.ndarray, rate: int, chunk: int) -> list[Packet]:
    enc = StreamEncoder(tier, rate, x.shape[1])
    out: list[Packet] = []
    for i in range(0, x.shape[0], chunk):
        out += enc.push(x[i:i + chunk])
    return out + enc.finish()


@pytest.mark.parametrize("rate,channels,seconds", [(16000, 1, 1.3), (44100, 2, 1.1)])
def test_streaming_equals_whole_file(tiny_tier, rate: int, channels: int, seconds: float) -> None:
    x = speech_like(seconds, rate, channels, seed=5)
    whole = encode_array(tiny_tier, x, rate)
    assert len(whole) >= 2 and all(p.kind == AUDIO for p in whole)
    assert [p.seq for p in whole] == list(range(len(whole)))
    rng = np.random.default_rng(0)
    for chunk in (1, 777, x.shape[0], int(rng.integers(2, 5000))):
        assert _chunked(tiny_tier, x, rate, chunk) == whole, f"chunk size {chunk}"
    # Irregular chunk sizes too.
    enc = StreamEncoder(tiny_tier, rate, channels)
    got, i = [], 0
    while i < x.shape[0]:
        n = int(rng.integers(0, 3000))
        got += enc.push(x[i:i + n])
        i += n
    assert got + enc.finish() == whole


LENGTHS = [0, 1, 479, 480, 512, 7680, 7700, 7712, 7713, 15392]


@pytest.mark.parametrize("n", LENGTHS)
def test_decode_exact_length_and_matches_reference(tiny_tier, n: int) -> None:
    x = speech_like(n / 16000, 16000, 1, seed=n)
    h, packets = encode_stream(tiny_tier, x, 16000)
    dec = StreamDecoder(tiny_tier, h)
    y = np.concatenate([dec.push(p) for p in packets] + [dec.finish()])
    assert y.shape == (n, 1)
    audio = [p for p in packets if p.kind == AUDIO]
    assert dec.stats.packets == len(audio) and dec.stats.damaged == 0
    assert dec.stats.lost_samples == 0 and dec.stats.ended
    if n:
        np.testing.assert_allclose(y, reference_decode(tiny_tier, audio, 1, n), atol=1e-6)
    # Without the END packet the header's total_samples gives the same length.
    assert decode_packets(tiny_tier, h, audio).shape == (n, 1)


@pytest.mark.parametrize("n", [0, 1, 44099, 44100, 44101])
def test_decode_exact_length_resampled(tiny_tier, n: int) -> None:
    x = speech_like(n / 44100, 44100, 2, seed=7)
    h, packets = encode_stream(tiny_tier, x, 44100)
    assert h.original_rate == 44100 and h.sample_rate == 16000
    y = decode_packets(tiny_tier, h, packets)
    assert y.shape == (n, 2) and np.isfinite(y).all()
    assert decode_packets(tiny_tier, h, packets[:-1]).shape == (n, 2)  # header length
    assert decode_packets(tiny_tier, h, packets, out_rate=16000).shape == (
        round(n * 16000 / 44100), 2)
    assert decode_packets(tiny_tier, h, packets, out_rate=8000).shape == (round(n * 8000 / 44100),
                                                                          2)


def test_lost_packet_becomes_silence_of_the_right_length(tiny_tier) -> None:
    f = tiny_tier.framing
    x = speech_like(2.0, 16000, 1, seed=9)
    h, packets = encode_stream(tiny_tier, x, 16000)
    clean = decode_packets(tiny_tier, h, packets)
    dec = StreamDecoder(tiny_tier, h, conceal="silence")
    lossy = np.concatenate([dec.push(p) for i, p in enumerate(packets) if i != 1]
                           + [dec.finish()])
    assert lossy.shape == clean.shape == (32000, 1)
    assert dec.stats.lost_samples == f.packet_hop and dec.stats.packets == len(packets) - 2
    hop = f.packet_hop
    np.testing.assert_array_equal(lossy[:hop], clean[:hop])
    assert not lossy[hop + f.overlap: 2 * hop].any()  # silence after the fade-out
    np.testing.assert_allclose(lossy[2 * hop + f.overlap: 3 * hop],
                               clean[2 * hop + f.overlap: 3 * hop], atol=1e-6)


def test_duplicate_and_reordered_packets_are_dropped(tiny_tier) -> None:
    x = speech_like(2.0, 16000, 1, seed=10)
    h, packets = encode_stream(tiny_tier, x, 16000)
    clean = decode_packets(tiny_tier, h, packets)
    dup = packets[:2] + [packets[1]] + packets[2:]
    dec = StreamDecoder(tiny_tier, h)
    y = np.concatenate([dec.push(p) for p in dup] + [dec.finish()])
    np.testing.assert_array_equal(y, clean)
    assert dec.stats.damaged == 1
    swapped = [packets[0], packets[2], packets[1], *packets[3:]]
    assert decode_packets(tiny_tier, h, swapped).shape == clean.shape


def test_encoder_refuses_bad_input(tiny_tier) -> None:
    enc = StreamEncoder(tiny_tier, 16000, 2)
    with pytest.raises(CodecError, match="channels"):
        enc.push(np.zeros((10, 3), np.float32))
    bad = np.zeros((10, 2), np.float32)
    bad[3, 1] = np.nan
    with pytest.raises(CodecError, match="NaN"):
        enc.push(bad)
    with pytest.raises(CodecError):
        StreamEncoder(tiny_tier, 16000, 0)


def test_decode_payload_rejects_bad_side_info(tiny_tier) -> None:
    side, layers = api.encode_payload(tiny_tier, speech_like(0.2)[:, 0][None], 3)
    with pytest.raises(CodecError):
        api.decode_payload(tiny_tier, side + b"\x00", layers, 1, 3)
    with pytest.raises(CodecError):
        api.decode_payload(tiny_tier, side, [], 1, 3)
    assert api.decode_payload(tiny_tier, side, layers, 1, 3)[0].shape == (1, 3, 512)


# --------------------------------------------------------------------------- tiers


def test_tier_save_load_round_trip(tiny_tier, tmp_path) -> None:
    tiny_tier.save(tmp_path / "copy")
    t = tiers.load_path(tmp_path / "copy.json")
    assert t.hash == tiny_tier.hash and t.name == "tiny"
    assert t.config == tiny_tier.config and t.framing == tiny_tier.framing
    np.testing.assert_array_equal(t.tables[0].freqs, tiny_tier.tables[0].freqs)
    a, b = t.model.state_dict(), tiny_tier.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    doc = json.loads((tmp_path / "copy.json").read_text())
    raw = (tmp_path / "copy.safetensors").read_bytes()
    assert doc["weights_sha256"] == hashlib.sha256(raw).hexdigest()
    x = speech_like(0.7, seed=11)
    assert encode_array(t, x, 16000) == encode_array(tiny_tier, x, 16000)


def test_tier_hash_check_catches_one_corrupt_byte(tiny_tier, tmp_path) -> None:
    tiny_tier.save(tmp_path / "bad")
    w = tmp_path / "bad.safetensors"
    raw = bytearray(w.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    w.write_bytes(bytes(raw))
    with pytest.raises(TierError, match="hash"):
        tiers.load_path(tmp_path / "bad.json")


def test_tier_load_is_strict(tiny_tier, tmp_path) -> None:
    tiny_tier.save(tmp_path / "strict")
    j = tmp_path / "strict.json"
    doc = json.loads(j.read_text())
    doc["cascade"]["nwc"]["channels"] = 16  # weights no longer fit the architecture
    j.write_text(json.dumps(doc))
    with pytest.raises(TierError, match="damaged"):
        tiers.load_path(j)
    (tmp_path / "strict.safetensors").unlink()
    with pytest.raises(TierError, match="missing"):
        tiers.load_path(j)
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(TierError):
        tiers.load_path(tmp_path / "junk.json")


def test_tier_lookup_uses_nwc_weights(weights_dir, tmp_path, monkeypatch) -> None:
    assert catalog.available()["tiny"] == weights_dir / "tiny.json"
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(weights_dir / "tiny.json", other / "tiny.json")  # shadowing copy, no weights
    monkeypatch.setenv("NWC_WEIGHTS", f"{other}{os.pathsep}{weights_dir}")
    assert catalog.available()["tiny"] == other / "tiny.json"


def test_stream_for_missing_tier_names_it(tiny_tier) -> None:
    with pytest.raises(TierError, match="'no-such-tier'"):
        tiers.load("no-such-tier")


def test_stream_with_other_weights_is_refused(tiny_tier) -> None:
    h = api.header_for(tiny_tier, 16000, 1, 100)
    StreamDecoder(tiny_tier, h)  # the right weights are accepted
    h.weights_hash = "0" * 16
    with pytest.raises(TierError, match="weights"):
        StreamDecoder(tiny_tier, h)
    h = api.header_for(tiny_tier, 16000, 1, 100)
    h.coder = "other-coder"
    with pytest.raises(CodecError, match="entropy-coded"):
        StreamDecoder(tiny_tier, h)
    h = api.header_for(tiny_tier, 16000, 1, 100)
    h.hop_size = 400
    with pytest.raises(CodecError, match="geometry"):
        StreamDecoder(tiny_tier, h)


def test_tier_hash_covers_tables(tiny_tier) -> None:
    t = tiers.build("tiny", 16000, tiny_tier.framing, tiny_tier.config,
                    entropy.CodeTables(tiny_tier.tables[0].freqs + 1),
                    state=tiny_tier.model.state_dict())
    t.weights_sha256 = tiny_tier.weights_sha256
    assert t.hash != tiny_tier.hash


# --------------------------------------------------------------------------- packet size


@pytest.mark.parametrize("lpc", [False, True])
@pytest.mark.parametrize("pf", [1, 3, 40])
def test_packet_frames_streams_and_round_trips(tiny_tier, lpc_tier, lpc: bool, pf: int) -> None:
    t = lpc_tier if lpc else tiny_tier
    x = speech_like(1.37, 16000, 1, seed=pf)
    whole = encode_array(t, x, 16000, packet_frames=pf)
    enc = StreamEncoder(t, 16000, 1, packet_frames=pf)
    chunked, rng, i = [], np.random.default_rng(pf), 0
    while i < len(x):  # any chunking gives the same packets
        n = int(rng.integers(1, 3000))
        chunked += enc.push(x[i:i + n])
        i += n
    chunked += enc.finish()
    assert [p.__dict__ for p in chunked] == [p.__dict__ for p in whole]
    f = t.framing
    assert len(whole) == math.ceil(f.frames_for(len(x)) / pf)
    assert [p.granule for p in whole[:-1]] == [(k + 1) * pf * f.hop for k in range(len(whole) - 1)]
    h = api.header_for(t, 16000, 1, len(x), packet_frames=pf)
    assert (h.packet_frames, h.weights_hash) == (pf, t.hash)  # the tier's identity is unchanged
    y = decode_packets(t, h, whole + [end_packet(whole, enc.coded_samples, len(x))])
    assert y.shape == (len(x), 1) and np.isfinite(y).all()
    # Same frames, same codes: only the per-packet gains (and LPC packet edges) differ, so
    # the decoded signal stays close to the default packet size's.
    ref = decode_packets(t, api.header_for(t, 16000, 1, len(x)), encode_array(t, x, 16000))
    assert np.corrcoef(y[:, 0], ref[:, 0])[0, 1] > 0.8


def test_packet_frames_limits(tiny_tier) -> None:
    from nwc.codec.framing import MAX_PACKET_FRAMES

    for bad in (0, MAX_PACKET_FRAMES + 1):
        with pytest.raises(CodecError, match="packet_frames"):
            StreamEncoder(tiny_tier, 16000, 1, packet_frames=bad)
    default = encode_array(tiny_tier, speech_like(0.7), 16000)
    assert encode_array(tiny_tier, speech_like(0.7), 16000,
                        packet_frames=tiny_tier.framing.packet_frames) == default
    h = api.header_for(tiny_tier, 16000, 1, 100, packet_frames=MAX_PACKET_FRAMES)
    StreamDecoder(tiny_tier, h)  # any encoder-chosen packet size is accepted ...
    h.packet_frames = MAX_PACKET_FRAMES + 1  # ... up to the bound a forged header could exceed
    with pytest.raises(CodecError, match="frames per packet"):
        StreamDecoder(tiny_tier, h)


def test_catalog_describes_tiers_without_loading_them(tiny_tier, lpc_tier) -> None:
    from nwc.codec import catalog

    for t in (tiny_tier, lpc_tier):
        info = catalog.info(t.name)
        assert (info.hash, info.layers, info.framing, info.sample_rate, info.model_id) == (
            t.hash, t.layers, t.framing, t.sample_rate, t.model_id)
        assert info.layer_kbps() == t.layer_kbps()
        assert catalog.header_for(info, 44100, 2, 7) == api.header_for(t, 44100, 2, 7)
        tierfile.check_weights(info)
    for path in sorted(tiers.SHIPPED_DIR.glob("*.json")):  # legacy and cascade formats
        assert tierfile.read(path).hash == tiers.load_path(path).hash, path.name


def test_warm_up_changes_nothing(tiny_tier, lpc_tier) -> None:
    for t in (tiny_tier, lpc_tier):
        for ch in (1, 2):
            x = speech_like(0.9, 16000, ch, seed=ch)
            ref = encode_array(t, x, 16000, packet_frames=2)
            enc = StreamEncoder(t, 16000, ch, packet_frames=2)
            enc.warm_up()
            assert enc.push(x) + enc.finish() == ref
            h = api.header_for(t, 16000, ch, len(x), packet_frames=2)
            dec = StreamDecoder(t, h)
            dec.warm_up()
            y = np.concatenate([dec.push(p) for p in ref] + [dec.finish()])
            assert np.array_equal(y, decode_packets(t, h, ref))
