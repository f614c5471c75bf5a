"""Recursive (IIR) filters of the LPC module in NumPy, a block at a time instead of a sample.

A filter ``1/A(z)`` run from a state over a block of ``L`` samples is linear in both, so its
output is a convolution with the filter's impulse response ``h`` (its first ``L`` terms, exact)
plus the response to the state, which is the response to a short "equivalent input" ``e``
(the state's contribution to the first ``p`` samples)::

    y[0:L] = (h[0:L] * (v + e))[0:L]          e[n] = −Σ_{k>n} a_k·y[n−k],  n < p

``h`` comes from the recursion run ``p`` samples at a time (a p×p matrix step), or for the
fixed high-pass once from Newton's iteration for a power-series inverse, and the convolutions
from FFTs, all batched over a packet's coefficient sets: a few dozen NumPy calls per packet where
a Python loop would take one per sample, and no compiler (numba costs each process ~0.4 s
and ~100 MB to start). The result equals the sample recursion within float64 rounding
(~1e-13 relative; tested against it), not bit for bit, and depends on where blocks start: the
encoder therefore pre-filters in blocks at fixed stream positions (``api.StreamEncoder``), so
any chunking of its input gives the same bytes.
"""

from __future__ import annotations

import numpy as np

BLOCK = 8192        # longest block one FFT covers; longer inputs are cut (state carried)
CLAMP = 1e4         # synthesis output bound (only forged streams reach it)


def _nfft(n: int) -> int:
    return 1 << max(int(n - 1).bit_length(), 1)


def inverse_series(a: np.ndarray, n: int) -> np.ndarray:
    """First ``n`` terms of the power series 1/A(z) for each row of ``a`` (S, p+1), a₀ = 1:
    the impulse responses of the all-pole filters. Newton: h ← h·(2 − A·h), doubling terms."""
    a = np.atleast_2d(np.asarray(a, np.float64))
    h = 1.0 / a[:, :1]
    m = 1
    while m < n:
        m2 = min(2 * m, n)
        f = _nfft(m2 + m)
        ah = np.fft.irfft(np.fft.rfft(a[:, :m2], f) * np.fft.rfft(h, f), f)[:, :m2]
        ah = -ah
        ah[:, 0] += 2.0
        h = np.fft.irfft(np.fft.rfft(h, f) * np.fft.rfft(ah, f), f)[:, :m2]
        m = m2
    return h[:, :n]


def _convolve(u: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Rows of ``u`` convolved with rows of ``h`` (both (S, L)), first L terms."""
    n = u.shape[-1]
    f = _nfft(2 * n)
    return np.fft.irfft(np.fft.rfft(u, f) * np.fft.rfft(h, f), f)[..., :n]


_HP_CACHE: dict[tuple, np.ndarray] = {}


def highpass_preemph(x: np.ndarray, b: np.ndarray, a: np.ndarray, state: np.ndarray,
                     coef: float) -> np.ndarray:
    """Biquad ``B/A`` (transposed direct form II state ``z0, z1``) then ``1 − coef·z⁻¹``.

    ``state`` = (z0, z1, previous high-passed sample), updated in place: calls on consecutive
    pieces continue the filter. The DF2T state's response is the all-pole response to
    ``e = (z0, z1)``.
    """
    x = np.asarray(x, np.float64)
    out = np.empty(x.shape[0])
    key = (tuple(a), BLOCK)
    if key not in _HP_CACHE:
        _HP_CACHE[key] = inverse_series(a, BLOCK)[0]
    h = _HP_CACHE[key]
    for s in range(0, x.shape[0], BLOCK):
        xb = x[s:s + BLOCK]
        n = xb.shape[0]
        v = b[0] * xb
        v[1:] += b[1] * xb[:-1]
        v[2:] += b[2] * xb[:-2]
        v[0] += state[0]
        if n > 1:
            v[1] += state[1]
        y = _convolve(v[None], h[None, :n])[0]
        if n == 1:  # the state also carries z1 through the second sample
            z1_prev = state[1]
        else:
            z1_prev = b[2] * xb[-2] - a[2] * y[-2]
        z0 = b[1] * xb[-1] - a[1] * y[-1] + z1_prev
        z1 = b[2] * xb[-1] - a[2] * y[-1]
        out[s:s + n] = y
        out[s] -= coef * state[2]
        out[s + 1:s + n] -= coef * y[:-1]
        state[0], state[1], state[2] = z0, z1, y[-1]
    return out


def _state_matrices(a: np.ndarray) -> np.ndarray:
    """E (S, p, p) with e = −E·mem: e[n] = −Σ_{k=n+1..p} a_k·mem[p+n−k] (mem oldest first)."""
    p = a.shape[1] - 1
    n, j = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    k = np.clip(p + n - j, 0, p)
    return np.where(j >= n, a[:, k], 0.0)


def impulse_responses(a: np.ndarray, n: int) -> np.ndarray:
    """First ``n`` samples of the impulse response of 1/A(z) for each row of ``a`` (S, p+1),
    ``a₀ = 1``: the recursion for the first p samples, then p at a time by the p×p matrix
    that maps p consecutive samples to the next p (the filter's p-step companion power)."""
    s_count, p = a.shape[0], a.shape[1] - 1
    out = np.zeros((s_count, max(n, p) + p))
    out[:, 0] = 1.0
    for t in range(1, p):
        out[:, t] = -np.einsum("sk,sk->s", a[:, 1:t + 1], out[:, t - 1::-1][:, :t])
    # step[s] maps (h[t−p+1..t]) to (h[t+1..t+p]); built by running p steps on a basis.
    basis = np.zeros((s_count, 2 * p, p))
    basis[:, :p, :] = np.eye(p)
    for t in range(p, 2 * p):
        basis[:, t, :] = -np.einsum("sk,skj->sj", a[:, 1:], basis[:, t - 1:t - p - 1 if
                                                                   t - p - 1 >= 0 else None:-1])
    step = basis[:, p:, :]
    for t in range(p, n, p):
        out[:, t:t + p] = np.einsum("sij,sj->si", step, out[:, t - p:t])
    return out[:, :n]


def _allpole_loop(v: np.ndarray, a: np.ndarray, mem: np.ndarray) -> np.ndarray:
    """The sample recursion with the output bound, for the rare block that reaches it."""
    p = mem.shape[0]
    buf = np.concatenate([mem, np.empty(v.shape[0])])
    for n in range(v.shape[0]):
        s = float(v[n])
        for k in range(1, p + 1):
            s -= a[k] * buf[p + n - k]
        buf[p + n] = min(max(s, -CLAMP), CLAMP)
    return buf[p:]


def synthesize(r: np.ndarray, sets: np.ndarray, idx: np.ndarray, mem: np.ndarray,
               coef: float, de_state: np.ndarray) -> np.ndarray:
    """1/Â(z) with the coefficient set ``sets[idx[n]]`` per sample, then de-emphasis.

    ``idx`` is non-decreasing (``lpc.set_index``). ``mem`` holds the last ``p`` synthesis
    outputs (oldest first), ``de_state[0]`` the last de-emphasised sample; both are updated in
    place. Outputs are bounded to ±1e4 (only a forged stream gets there).
    """
    r = np.asarray(r, np.float64)
    n_all = r.shape[0]
    if n_all == 0:
        return np.empty(0)
    state = mem
    p = mem.shape[0]
    cuts = np.flatnonzero(np.diff(idx)) + 1
    starts = [0, *cuts.tolist()]
    ends = [*cuts.tolist(), n_all]
    runs = [(s2, min(s2 + BLOCK, e)) for s, e in zip(starts, ends, strict=True)
            for s2 in range(s, e, BLOCK)]
    longest = max(e - s for s, e in runs)
    a_runs = np.asarray(sets, np.float64)[[idx[s] for s, _ in runs]]
    h = impulse_responses(a_runs, longest)
    v = np.zeros((len(runs), longest))
    for j, (s, e) in enumerate(runs):
        v[j, : e - s] = r[s:e]
    zsr = _convolve(v, h)   # every run's response from rest, in one batch
    # Each run's response to the state: its equivalent input e = −E·mem (first p samples)
    # through p shifted copies of its h (cols[n, i] = h[n − i]).
    emat = _state_matrices(a_runs)
    hp = np.concatenate([np.zeros((len(runs), p - 1)), h], axis=1)
    cols = np.lib.stride_tricks.sliding_window_view(hp, p, axis=1)[:, :, ::-1]
    syn = np.empty(n_all)
    for j, (s, e) in enumerate(runs):
        n = e - s
        m = min(p, n)
        e_in = -(emat[j, :m] @ mem)
        y = zsr[j, :n] + cols[j, :n, :m] @ e_in
        if not np.all(np.abs(y) <= CLAMP):
            y = _allpole_loop(r[s:e], a_runs[j], mem)
        syn[s:e] = y
        mem = np.concatenate([mem, y])[-p:] if n < p else y[-p:]
    state[:] = mem
    # De-emphasis 1/(1 − coef·z⁻¹): coef^n falls below float64 resolution within 128 taps.
    taps = min(128, n_all)
    g = coef ** np.arange(taps)
    out = _convolve(syn[None], np.pad(g, (0, n_all - taps))[None])[0] \
        + de_state[0] * coef ** np.arange(1, n_all + 1)
    de_state[0] = out[-1]
    return out
