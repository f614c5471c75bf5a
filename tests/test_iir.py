"""The block-wise NumPy filters of the LPC module against the sample recursion they replace."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import speech_like
from nwc.codec import iir, lpc


def highpass_loop(x, b, a, state, coef):
    """The recursion, sample by sample (transposed direct form II, then pre-emphasis)."""
    y = np.empty(len(x))
    z0, z1, prev = state
    for n, xn in enumerate(x):
        h = b[0] * xn + z0
        z0 = b[1] * xn - a[1] * h + z1
        z1 = b[2] * xn - a[2] * h
        y[n] = h - coef * prev
        prev = h
    state[:] = z0, z1, prev
    return y


def synthesize_loop(r, sets, idx, mem, coef, de):
    p = len(mem)
    buf = list(mem)
    out = np.empty(len(r))
    d = de[0]
    for n in range(len(r)):
        a = sets[idx[n]]
        s = r[n] - sum(a[k] * buf[-k] for k in range(1, p + 1))
        s = min(max(s, -iir.CLAMP), iir.CLAMP)
        buf.append(s)
        d = s + coef * d
        out[n] = d
    mem[:] = buf[-p:]
    de[0] = d
    return out


@pytest.mark.parametrize("fn", [iir.inverse_series, iir.impulse_responses])
def test_impulse_responses(fn) -> None:
    a = lpc.lsf_to_lpc(lpc.stabilize(np.sort(np.random.default_rng(0).uniform(0.1, 3, (3, 16)))))
    h = fn(a, 300)
    for row, hr in zip(a, h, strict=True):
        ref = synthesize_loop(np.eye(1, 300)[0], row[None], np.zeros(300, int), np.zeros(16),
                              0.0, np.zeros(1))
        np.testing.assert_allclose(hr, ref, rtol=0, atol=1e-11 * np.abs(ref).max())


@pytest.mark.parametrize("cuts", [[0, 1, 2, 700, 9000, 12000], [0, 12000]])
def test_highpass_matches_the_recursion_across_calls(cuts: list[int]) -> None:
    x = speech_like(0.75, seed=2)[:, 0].astype(np.float64)
    s_ref, s_np = np.zeros(3), np.zeros(3)
    for a, b in zip(cuts, cuts[1:], strict=False):
        ref = highpass_loop(x[a:b], lpc.HP_B, lpc.HP_A, s_ref, lpc.PREEMPH)
        got = iir.highpass_preemph(x[a:b], lpc.HP_B, lpc.HP_A, s_np, lpc.PREEMPH)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
        np.testing.assert_allclose(s_np, s_ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("gain", [1.0, 1e7], ids=["speech", "clamped"])
def test_synthesis_matches_the_recursion(gain: float) -> None:
    x = lpc.preprocess(speech_like(0.6, seed=4)[:, 0].astype(np.float64))
    n = 12
    length = (n - 1) * 480 + 512
    a = lpc.lsf_to_lpc(lpc.lpc_to_lsf(lpc.lpc_analysis(
        np.stack([x[j * 480: j * 480 + 512] for j in range(n)]))))
    sets = np.vstack([a[:1], a])
    idx = lpc.set_index(length, 480, 32, n)
    r = lpc.residual(np.concatenate([np.zeros(lpc.ORDER), x[:length]]), sets, idx) * gain
    m_ref, d_ref = np.zeros(16), np.zeros(1)
    m_np, d_np = np.zeros(16), np.zeros(1)
    for cut in ((0, 300), (300, length)):  # state carried between calls
        sl = slice(*cut)
        ref = synthesize_loop(r[sl], sets, idx[sl], m_ref, lpc.PREEMPH, d_ref)
        got = iir.synthesize(r[sl], sets, idx[sl], m_np, lpc.PREEMPH, d_np)
        scale = np.abs(ref).max()
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * scale)
        np.testing.assert_allclose(m_np, m_ref, rtol=0, atol=1e-12 * scale)
    if gain > 1:
        assert np.abs(m_ref).max() == iir.CLAMP  # the bound was reached and followed
