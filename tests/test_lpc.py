"""LPC module, CMRL cascade and layered streams: filters, LSFs, closed loop, truncation."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from conftest import LPC_TIER_NAME, speech_like
from nwc.codec import api, lpc, lpc_torch
from nwc.codec.cascade import Cascade, CascadeConfig
from nwc.codec.model import NWCConfig
from nwc.formats.container import AUDIO, ContainerReader

TINY = NWCConfig(channels=8, narrow=4, code_channels=2, levels=7)


def _frames(seed: int, n: int = 40) -> np.ndarray:
    """Real-ish frames (speech-like, pre-processed) and coloured noise frames."""
    x = lpc.preprocess(speech_like(n * 0.03 + 0.1, seed=seed)[:, 0].astype(np.float64))
    speech = np.stack([x[i * 480: i * 480 + 512] for i in range(n)])
    rng = np.random.default_rng(seed)
    noise = np.cumsum(rng.standard_normal((n, 512)), axis=1) * rng.uniform(0, 1, (n, 1))
    return np.concatenate([speech, noise, np.zeros((2, 512))])


# --------------------------------------------------------------------------- LPC ↔ LSF


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lpc_lsf_round_trip(seed: int) -> None:
    a = lpc.lpc_analysis(_frames(seed))
    lsf = lpc.lpc_to_lsf(a)
    assert np.all(np.diff(lsf, axis=1) > 0) and lsf.min() > 0 and lsf.max() < np.pi
    np.testing.assert_allclose(lpc.lsf_to_lpc(lsf), a, atol=2e-6)


def test_any_lsfs_give_stable_filters() -> None:
    rng = np.random.default_rng(3)
    raw = np.concatenate([rng.uniform(-1, 4, (300, 16)),            # unsorted, out of range
                          np.full((5, 16), 1.0), np.zeros((5, 16))])  # collapsed
    a = lpc.lsf_to_lpc(lpc.stabilize(raw))
    gain = lpc.prediction_gain_db(a)
    assert gain.max() <= lpc.MAX_GAIN_DB
    ok = gain < 45  # well-conditioned rows: check the poles directly too
    assert ok.sum() > 10 and max(np.abs(np.roots(row)).max() for row in a[ok]) < 1.0
    imp = np.zeros(16000)
    imp[0] = 1.0
    for row in a[-12:]:
        y = lpc.LPCDecoderState().synthesize(imp, row[None], np.zeros(16000, np.int64))
        assert np.isfinite(y).all() and np.abs(y[-500:]).max() < 1e-3 * np.abs(y).max()


def test_torch_and_numpy_paths_agree() -> None:
    rng = np.random.default_rng(4)
    raw = rng.uniform(0, 3.2, (50, 16))
    st_np = lpc.stabilize(raw)
    st_t = lpc_torch.stabilize_torch(torch.from_numpy(raw)).numpy()
    np.testing.assert_allclose(st_t, st_np, atol=1e-12)
    # (the numpy path also tames implausible filters; compare the plain conversion)
    np.testing.assert_allclose(lpc_torch.lsf_to_lpc_torch(torch.from_numpy(st_np)).numpy(),
                               lpc._lsf_to_lpc(st_np), atol=1e-8)


def test_lsf_quantizer_symbols_round_trip_and_gradients() -> None:
    q = lpc_torch.LSFQuantizer()
    lsf = lpc.lpc_to_lsf(lpc.lpc_analysis(_frames(5)))
    sym = q.to_symbols(lsf)
    assert sym.shape == (lsf.shape[0], 16, 1) and sym.min() >= 0 and sym.max() < q.n_symbols
    back = q.from_symbols(sym)
    assert np.abs(back - lsf).max() < 0.02  # half a step (0.01) plus the gap rule
    t = torch.from_numpy(lsf.astype(np.float32))
    out, bits = q(t)
    (out.sum() + bits).backward()
    assert q.log_step.grad is not None and torch.isfinite(q.log_step.grad).all()


# --------------------------------------------------------------------------- filters


def test_prefilter_continues_across_chunks() -> None:
    # Within float64 rounding: the block-wise filter's rounding depends on where blocks start,
    # so the encoder pre-filters at fixed stream positions (any chunking gives the same
    # packets: test_codec.py::test_packet_frames_streams_and_round_trips).
    x = speech_like(1.0, seed=6)[:, 0].astype(np.float64)
    whole = lpc.PreFilter()(x)
    pf = lpc.PreFilter()
    cuts = [0, 1, 17, 480, 481, 5000, x.shape[0]]
    parts = np.concatenate([pf(x[a:b]) for a, b in zip(cuts, cuts[1:], strict=False)])
    np.testing.assert_allclose(parts, whole, rtol=0, atol=1e-13)


def test_synthesis_inverts_analysis_across_set_switches() -> None:
    x = lpc.preprocess(speech_like(0.5, seed=7)[:, 0].astype(np.float64))
    n = 14
    length = (n - 1) * 480 + 512
    a = lpc.lsf_to_lpc(lpc.lpc_to_lsf(lpc.lpc_analysis(
        np.stack([x[j * 480: j * 480 + 512] for j in range(n)]))))
    sets = np.vstack([a[:1], a])
    idx = lpc.set_index(length, 480, 32, n)
    r = lpc.residual(np.concatenate([np.zeros(lpc.ORDER), x[:length]]), sets, idx)
    assert r.std() < 0.7 * x[:length].std()  # it predicts
    y = lpc.LPCDecoderState().synthesize(r, sets, idx).astype(np.float64)
    # The decoder undoes the pre-emphasis too: re-applying it must give x back.
    np.testing.assert_allclose(y[1:] - lpc.PREEMPH * y[:-1], x[1:length], atol=1e-5)


def test_training_synthesis_matches_the_decoder_and_has_gradients() -> None:
    """The loss's FFT synthesis equals the decoder's recursion for one set, stays close across
    set switches, and passes gradients to the LPC coefficients."""
    x = lpc.preprocess(speech_like(0.6, seed=3)[:, 0].astype(np.float64))
    p, n = 16, 16 * 480 + 32
    a = lpc.lsf_to_lpc(lpc.stabilize(lpc.lpc_to_lsf(lpc.lpc_analysis(
        np.stack([x[j * 480: j * 480 + 512] for j in range(p + 1)])))))
    e = np.random.default_rng(0).standard_normal(n)
    a_t = torch.tensor(a[None], dtype=torch.float64, requires_grad=True)
    h = lpc_torch.synthesis_responses(a_t)

    def snr_db(idx: np.ndarray) -> float:
        ref = lpc.LPCDecoderState().synthesize(e, a, idx).astype(np.float64)
        y = lpc_torch.synthesize_torch(torch.from_numpy(e[None]), h.detach(),
                                 torch.from_numpy(idx))[0].numpy()
        return float(10 * np.log10((ref ** 2).sum() / ((ref - y) ** 2).sum()))

    assert snr_db(np.zeros(n, np.int64)) > 60.0       # one set: the same filter
    assert snr_db(lpc.set_index(n, 480, 32, p)) > 20.0  # switches: transients only
    y = lpc_torch.synthesize_torch(torch.from_numpy(e[None]), h, torch.from_numpy(
        lpc.set_index(n, 480, 32, p)))
    y.pow(2).sum().backward()
    assert a_t.grad is not None and torch.isfinite(a_t.grad).all()
    assert a_t.grad[0, :, 1:].abs().sum() > 0


def test_training_synthesis_is_the_sum_of_each_sets_convolution() -> None:
    """The run-by-run synthesis equals its definition: Σ_s conv(e masked to set s, h_s),
    values and gradients (to float64 rounding), for the training packets' set layout."""
    rng = np.random.default_rng(5)
    p, n, length = 16, 16 * 480 + 32, 64
    idx = torch.from_numpy(lpc.set_index(n, 480, 32, p))
    e = torch.tensor(rng.standard_normal((3, n)), requires_grad=True)
    h = torch.tensor(rng.standard_normal((3, p + 1, length)) * 0.5 ** np.arange(length),
                     requires_grad=True)
    y = lpc_torch.synthesize_torch(e, h, idx)
    onehot = torch.nn.functional.one_hot(idx, p + 1).double().T            # (S, n)
    full = (e[:, None, :] * onehot).reshape(-1, 1, n)
    ref = torch.nn.functional.conv1d(torch.nn.functional.pad(full, (length - 1, 0)).reshape(
        1, -1, n + length - 1), h.reshape(-1, 1, length).flip(-1), groups=3 * (p + 1))
    ref = ref.reshape(3, p + 1, n).sum(1)
    torch.testing.assert_close(y, ref, atol=1e-10, rtol=1e-9)
    g = torch.randn(3, n, dtype=torch.float64)
    ge, gh = torch.autograd.grad((y * g).sum(), (e, h))
    re, rh = torch.autograd.grad((ref * g).sum(), (e, h))
    torch.testing.assert_close(ge, re, atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(gh, rh, atol=1e-10, rtol=1e-9)


def test_highpass_is_the_prefilter_without_pre_emphasis() -> None:
    x = speech_like(0.3, seed=1)[:, 0].astype(np.float64)
    h = lpc.highpass(x)
    np.testing.assert_allclose(h[1:] - lpc.PREEMPH * h[:-1], lpc.preprocess(x)[1:], atol=1e-9)


# --------------------------------------------------------------------------- cascade


def test_cascade_residual_bookkeeping() -> None:
    torch.manual_seed(0)
    m = Cascade(CascadeConfig(nwc=TINY, stages=3, res_scale=4.0)).eval()
    frames = torch.randn(6, 512) * 0.3
    out = m(frames, quantize=True)
    # Stage k codes (x − Σ_{j<k} x̂_j)·s and the running sum adds its output / s.
    total = torch.zeros_like(frames)
    for k, stage in enumerate(m.stages):
        s = m.scale(k)
        rec, *_ = stage((frames - total) * s, True)
        total = total + rec / s
        torch.testing.assert_close(out.recs[k], total)
    sym3 = m.encode_frames(frames.numpy(), 3)
    sym1 = m.encode_frames(frames.numpy(), 1)
    np.testing.assert_array_equal(sym1[0], sym3[0])  # closed loop: lower layers don't change
    y1 = m.decode_frames(sym3[:1])
    y3 = m.decode_frames(sym3)
    assert y1.shape == y3.shape == (6, 512) and not np.allclose(y1, y3)


class _Passthrough(torch.nn.Module):
    """Stands in for the stages: 'codes' the residual frames losslessly (test double)."""

    def __init__(self, real: Cascade) -> None:
        super().__init__()
        self.real = real
        self.lsf = real.lsf
        self.stash: list[np.ndarray] = []
        self.code_steps = real.code_steps
        self.symbol_channels = real.symbol_channels

    def encode_frames(self, frames: np.ndarray, n: int) -> list[np.ndarray]:
        self.stash.append(frames.copy())
        return [np.zeros((frames.shape[0], 2, self.code_steps), np.int32)] * n

    def decode_frames(self, symbols: list[np.ndarray]) -> np.ndarray:
        return self.stash.pop(0)


def test_lpc_stream_is_exact_with_a_lossless_residual(lpc_tier) -> None:
    tier = dataclasses.replace(lpc_tier, model=_Passthrough(lpc_tier.model))
    x = speech_like(2.3, seed=8)[:, 0]
    enc = api.StreamEncoder(tier, 16000, 1)
    packets = []
    for a in range(0, x.shape[0], 3001):
        packets += enc.push(x[a:a + 3001])
    packets += enc.finish()
    h = api.header_for(tier, 16000, 1, x.shape[0])
    y = api.decode_packets(tier, h, packets)[:, 0].astype(np.float64)
    assert y.shape == x.shape
    hp = lpc.preprocess(x.astype(np.float64))
    np.testing.assert_allclose(y[1:] - lpc.PREEMPH * y[:-1], hp[1:], atol=2e-4)


def test_lpc_tier_streaming_equals_whole_file(lpc_tier) -> None:
    x = speech_like(1.7, seed=9)[:, 0]
    whole = api.encode_array(lpc_tier, x, 16000)
    enc = api.StreamEncoder(lpc_tier, 16000, 1)
    parts = []
    for a in range(0, x.shape[0], 777):
        parts += enc.push(x[a:a + 777])
    parts += enc.finish()
    assert [(p.side, p.layers) for p in parts] == [(p.side, p.layers) for p in whole]
    assert all(len(p.layers) == 2 for p in whole)
    one = api.encode_array(lpc_tier, x, 16000, layers=1)
    assert [p.layers for p in one] == [p.layers[:1] for p in whole]
    for k in (1, 2):
        h = api.header_for(lpc_tier, 16000, 1, x.shape[0], layers=k)
        y = api.decode_packets(lpc_tier, h, whole)
        assert y.shape == (x.shape[0], 1) and np.isfinite(y).all()


# --------------------------------------------------------------------------- CLI


def test_truncate_matches_direct_encode_and_decodes(run_nwc, wav, tmp_path) -> None:
    src = wav(seconds=1.3, seed=3)
    full, cut, direct = tmp_path / "full.nwc", tmp_path / "cut.nwc", tmp_path / "one.nwc"
    assert run_nwc("encode", src, full, "-t", LPC_TIER_NAME, "-q").returncode == 0
    assert run_nwc("encode", src, direct, "-t", LPC_TIER_NAME, "--layers", "1",
                   "-q").returncode == 0
    r = run_nwc("truncate", full, cut, "--layers", "1")
    assert r.returncode == 0, r.stderr
    assert cut.read_bytes() == direct.read_bytes()
    assert cut.stat().st_size < full.stat().st_size
    for k, path in ((1, cut), (2, full)):
        info = json.loads(run_nwc("info", path, "--json").stdout)
        assert info["num_layers"] == k
        out = tmp_path / f"dec{k}.wav"
        assert run_nwc("decode", path, out, "-q").returncode == 0
    with open(cut, "rb") as f:
        assert all(len(p.layers) == 1 for p in ContainerReader(f) if p.kind == AUDIO)


def test_truncate_by_bitrate_and_errors(run_nwc, wav, tmp_path) -> None:
    src = wav(seconds=0.6)
    full = tmp_path / "full.nwc"
    assert run_nwc("encode", src, full, "-t", LPC_TIER_NAME, "-q").returncode == 0
    r = run_nwc("truncate", full, tmp_path / "b.nwc", "--bitrate", "2.5k", "-q")
    assert r.returncode == 0, r.stderr
    assert json.loads(run_nwc("info", tmp_path / "b.nwc", "--json").stdout)["num_layers"] == 1
    r = run_nwc("truncate", full, tmp_path / "c.nwc", "--layers", "3")
    assert r.returncode == 1 and b"2 layer" in r.stderr and b"Traceback" not in r.stderr
    assert not (tmp_path / "c.nwc").exists()
    r = run_nwc("truncate", full, tmp_path / "d.nwc", "--layers", "1", "--bitrate", "2k")
    assert r.returncode == 2
    r = run_nwc("truncate", src, tmp_path / "e.nwc", "--layers", "1")
    assert r.returncode == 1 and not (tmp_path / "e.nwc").exists()


def test_layered_stream_through_pipes(run_shell, wav, tmp_path) -> None:
    wav("in.wav", seconds=1.1, seed=4)
    r = run_shell(f"nwc encode in.wav - -t {LPC_TIER_NAME} -q | nwc truncate - - --layers 1 -q"
                  " | nwc decode - out.wav -q && nwc encode in.wav one.nwc -q -t "
                  f"{LPC_TIER_NAME} --layers 1 && nwc decode one.nwc direct.wav -q", tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.wav").read_bytes() == (tmp_path / "direct.wav").read_bytes()
