"""The ``coded`` stereo training view: stereo files drawn as the channels the encoder codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import speech_like, write_wav
from nwc.codec import stereo
from nwc.codec.framing import Framing
from nwc.codec.gain import gain_code, gain_value
from nwc.train.data import PacketSampler, coded_channel, training_signals
from test_train import TINY_ARGS, train_cli

SPAN = 4000


def _pair(side: float, seed: int = 0, n: int = SPAN) -> np.ndarray:
    """(2, n): L = x + side·y, R = x − side·y for independent x, y (S = side·y)."""
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((2, n)).astype(np.float32) * 0.1
    return np.stack([x + side * y, x - side * y])


def test_a_quiet_side_is_coded_at_its_mid_s_gain() -> None:
    seg = _pair(0.2)
    assert stereo.choose(seg, "auto") == stereo.MS
    got = coded_channel(seg, 1, SPAN)
    assert got is not None
    s, code = got
    np.testing.assert_allclose(s, (seg[0] - seg[1]) / 2, atol=1e-6)
    assert code == gain_code((seg[0] + seg[1]) / 2) > gain_code(s)  # M's gain, not its own
    m, m_code = coded_channel(seg, 0, SPAN) or (None, 0)
    assert m is not None and m_code == gain_code(m)


def test_wide_stereo_is_drawn_as_l_or_r_with_own_gain() -> None:
    seg = _pair(2.0)
    assert stereo.choose(seg, "auto") == stereo.LR
    for pick in (0, 1):
        got = coded_channel(seg, pick, SPAN)
        assert got is not None
        np.testing.assert_array_equal(got[0], seg[pick])
        assert got[1] == gain_code(seg[pick])


def test_a_side_the_encoder_drops_is_never_drawn() -> None:
    seg = _pair(0.01)                            # S 40 dB under M: sent as SILENT
    assert coded_channel(seg, 1, SPAN) is None
    silent = np.zeros((2, SPAN), np.float32)
    assert coded_channel(silent, 0, SPAN) is None


def test_lpc_tiers_see_l_and_r_only() -> None:
    seg = _pair(0.2)
    got = coded_channel(seg, 1, SPAN, "lr")
    assert got is not None
    np.testing.assert_array_equal(got[0], seg[1])


def test_mode_and_gain_follow_the_packet_not_its_history() -> None:
    quiet_history = _pair(0.2, n=1000) * 0.01
    seg = np.concatenate([quiet_history, _pair(0.2, seed=1)], axis=1)
    _, code = coded_channel(seg, 0, SPAN) or (None, 0)
    assert code == gain_code((seg[0, -SPAN:] + seg[1, -SPAN:]) / 2)


def test_sampler_normalises_s_rows_by_their_m_s_gain() -> None:
    f = Framing(512, 480, 4)
    sig = np.concatenate([_pair(0.2, seed=k, n=f.packet_span(4)) for k in range(40)], axis=1)
    sampler = PacketSampler([sig], f, seed=3)
    rows = sampler.batch(64)
    assert sampler.last_codes is not None
    rms = np.sqrt(np.mean(rows ** 2, axis=1))
    # M rows are at their own level (RMS ~1 after normalisation), S rows at S/M ~ 0.2.
    assert (rms > 0.7).sum() > 10 and (rms < 0.35).sum() > 10
    assert np.all((rms > 0.7) | (rms < 0.35))
    raw = sampler.raw_batch(8)
    g = np.array([gain_value(int(c)) for c in sampler.last_codes])
    assert np.all(g > 0) and raw.shape == (8, f.packet_span(4))


def test_mono_signals_keep_their_own_gain() -> None:
    f = Framing(512, 480, 4)
    mono = speech_like(2.0)[:, 0]
    sampler = PacketSampler([mono], f, seed=0)
    sampler.raw_batch(4)
    assert sampler.last_codes is None


def test_training_signals_per_view(tmp_path: Path) -> None:
    mono = write_wav(tmp_path / "m.wav", 0.5, 16000, 1)
    st = write_wav(tmp_path / "s.wav", 0.5, 16000, 2, seed=2)
    tri = write_wav(tmp_path / "t.wav", 0.5, 16000, 3, seed=3)
    mix = training_signals([mono, st, tri], 16000, "mix")
    assert [s.shape for s in mix] == [(8000,)] * 3
    coded = training_signals([mono, st, tri], 16000, "coded")
    assert [s.shape for s in coded] == [(8000,), (2, 8000), (8000,), (8000,), (8000,)]
    with pytest.raises(ValueError, match="stereo view"):
        training_signals([mono], 16000, "left")


def test_train_on_the_coded_view_end_to_end(tmp_path: Path) -> None:
    d = tmp_path / "data"
    (d / "dev").mkdir(parents=True)
    write_wav(d / "a.wav", 1.5, 16000, 2, seed=1)
    write_wav(d / "b.wav", 1.5, 16000, 1, seed=2)
    write_wav(d / "dev" / "c.wav", 1.1, 16000, 1, seed=3)
    out = tmp_path / "t"
    r = train_cli(d, "--out", out, "--max-steps", "4", "--stereo-data", "coded", *TINY_ARGS)
    assert r.returncode == 0, r.stderr
    cfg = json.loads(out.with_suffix(".json").read_text())["meta"]["training"]["config"]
    assert cfg["stereo_data"] == "coded"
    r = train_cli(d, "--out", out, "--max-steps", "1", "--stereo-data", "both", *TINY_ARGS)
    assert r.returncode == 2 and "stereo-data" in r.stderr
