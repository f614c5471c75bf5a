"""Linear prediction for the hybrid coder (prior-art §D): module 0 of the CMRL cascade.

Pipeline, per channel::

    encoder: x → high-pass → pre-emphasis → LPC per frame → LSFs → trainable quantizer
               → Â(z) of the quantized LSFs → residual r = Â(z)·x   (coded by the NWC stages)
    decoder: r̂ → 1/Â(z) (state carried across frames) → de-emphasis → x̂

The residual is one global signal: the coefficient set of frame ``j`` filters the samples
``[j·H + ov, (j+1)·H + ov)`` (``ov`` = frame overlap), so a frame's leading overlap uses the
previous frame's set. With that split the decoder's time-varying synthesis filter is the exact
inverse of the encoder's analysis filter, and a packet never needs its successor's set.
Quantization error in the residual comes out of the synthesis filter shaped like the speech
envelope: the noise shaping CELP codecs get from their weighting filter.

The LSF quantizer is a uniform scalar quantizer per LSF with a learned step and a learned
Laplace entropy model (the noise-proxy quantizer of ``quantize.py``), so LSF bits and residual
bits are traded by the same rate term in training. Dequantized LSFs are sorted and kept a
minimum gap apart, which guarantees a stable synthesis filter for any symbols.
"""

from __future__ import annotations

import numpy as np

from . import iir

ORDER = 16
PREEMPH = 0.68
# AMR-WB's pre-processing high-pass (prior-art §D).
HP_B = np.array([0.989502, -1.979004, 0.989592])
HP_A = np.array([1.0, -1.978882, 0.979126])
LSF_GAP = 0.012       # minimum LSF spacing in radians (≈ 30 Hz at 16 kHz)
LAG_HZ = 60.0         # Gaussian lag window: widens formant bandwidths, conditions Levinson
WHITE_NOISE = 1.0001  # r(0) correction, -40 dB noise floor


# Trainable and differentiable parts live in lpc_torch.py (torch); this module is NumPy.


# --- stateful filters: block-wise NumPy (codec/iir.py), continued across calls by their state

_highpass_preemph = iir.highpass_preemph
_synthesize = iir.synthesize


class PreFilter:
    """Streaming high-pass + pre-emphasis of one channel (the encoder's first step)."""

    def __init__(self) -> None:
        self.state = np.zeros(3, dtype=np.float64)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return _highpass_preemph(np.ascontiguousarray(x, dtype=np.float64), HP_B, HP_A,
                                 self.state, PREEMPH)


def preprocess(x: np.ndarray) -> np.ndarray:
    """Whole-signal pre-processing (training data): rows of ``x`` filtered independently."""
    x2 = np.atleast_2d(x)
    out = np.stack([PreFilter()(row) for row in x2])
    return out.reshape(x.shape)


# --- analysis ---------------------------------------------------------------------------

def _lag_window(order: int, rate: int) -> np.ndarray:
    k = np.arange(order + 1)
    return np.exp(-0.5 * (2 * np.pi * LAG_HZ * k / rate) ** 2)


def lpc_analysis(frames: np.ndarray, rate: int = 16000, order: int = ORDER) -> np.ndarray:
    """LPC polynomials (N, order+1), ``a[:, 0] = 1``, of Hann-windowed frames (N, L).

    Autocorrelation with a lag window and white-noise correction, then Levinson–Durbin:
    the result is minimum phase for any input, silence included.
    """
    frames = np.asarray(frames, dtype=np.float64)
    n, length = frames.shape
    w = frames * np.hanning(length + 2)[1:-1]
    spec = np.fft.rfft(w, 2 * length)
    ac = np.fft.irfft(spec.real ** 2 + spec.imag ** 2)[:, : order + 1]
    ac = ac * _lag_window(order, rate)
    ac[:, 0] = ac[:, 0] * WHITE_NOISE + 1e-10
    a = np.zeros((n, order + 1))
    a[:, 0] = 1.0
    err = ac[:, 0].copy()
    for i in range(1, order + 1):
        acc = ac[:, i] + np.einsum("nj,nj->n", a[:, 1:i], ac[:, i - 1:0:-1])
        k = -acc / err
        a[:, 1:i] = a[:, 1:i] + k[:, None] * a[:, i - 1:0:-1]
        a[:, i] = k
        err = err * (1.0 - k * k)
    return a


def _cheb_to_power() -> np.ndarray:
    """Matrix mapping Chebyshev coefficients c_0..c_8 to power-series coefficients in x."""
    m = np.zeros((9, 9))
    for k in range(9):
        e = np.zeros(k + 1)
        e[k] = 1.0
        v = np.polynomial.chebyshev.cheb2poly(e)
        m[: v.shape[0], k] = v
    return m


_CHEB = _cheb_to_power()


def _symmetric_roots(c: np.ndarray) -> np.ndarray:
    """Angles in (0, π) of the unit-circle roots of symmetric polynomials c (N, 17)."""
    # z⁸·C(z) = c8 + Σ_k c_{8−k}(z^k + z^−k) = c8 + Σ_k 2·c_{8−k}·T_k(cos ω): a degree-8
    # polynomial in x = cos ω whose 8 roots are real and inside (−1, 1).
    cheb = np.concatenate([c[:, 8:9], 2.0 * c[:, 7::-1]], axis=1)   # T_0..T_8
    power = cheb @ _CHEB.T                                            # x^0..x^8
    lead = power[:, 8:9]
    comp = np.zeros((c.shape[0], 8, 8))
    comp[:, 0, :] = -power[:, 7::-1] / lead
    comp[:, 1:, :-1] = np.eye(7)
    roots = np.linalg.eigvals(comp)
    return np.arccos(np.clip(roots.real, -1.0, 1.0))


def lpc_to_lsf(a: np.ndarray) -> np.ndarray:
    """Line spectral frequencies (N, 16), ascending in (0, π), of LPC polynomials (N, 17)."""
    a = np.asarray(a, dtype=np.float64)
    ext = np.concatenate([a, np.zeros((a.shape[0], 1))], axis=1)
    p_full = ext + ext[:, ::-1]     # root at z = −1
    q_full = ext - ext[:, ::-1]     # root at z = +1
    # Deflate the trivial roots: P/(1 + z⁻¹) and Q/(1 − z⁻¹), both symmetric of degree 16.
    p = np.cumsum(p_full * (-1.0) ** np.arange(18), axis=1)[:, :17] * (-1.0) ** np.arange(17)
    q = np.cumsum(q_full, axis=1)[:, :17]
    lsf = np.sort(np.concatenate([_symmetric_roots(p), _symmetric_roots(q)], axis=1), axis=1)
    return stabilize(lsf)


def stabilize(lsf: np.ndarray, gap: float = LSF_GAP) -> np.ndarray:
    """Sort and keep LSFs ``gap`` apart inside (0, π): any result gives a stable filter."""
    x = np.sort(np.asarray(lsf, dtype=np.float64), axis=-1)
    x = np.where(np.isfinite(x), x, np.linspace(0.1, 3.0, x.shape[-1]))
    n = x.shape[-1]
    x[..., 0] = np.maximum(x[..., 0], gap)
    for i in range(1, n):
        x[..., i] = np.maximum(x[..., i], x[..., i - 1] + gap)
    x[..., -1] = np.minimum(x[..., -1], np.pi - gap)
    for i in range(n - 2, -1, -1):
        x[..., i] = np.minimum(x[..., i], x[..., i + 1] - gap)
    return x


def _poly_from_pairs(cos2: np.ndarray, ones, pad):
    """Π (1 − 2cos ω z⁻¹ + z⁻²) over the last axis of ``cos2`` (= 2cos ω); numpy or torch."""
    p = ones
    for i in range(cos2.shape[-1]):
        c = cos2[..., i:i + 1]
        p = pad(p, (0, 2)) - pad(p * c, (1, 1)) + pad(p, (2, 0))
    return p


MAX_GAIN_DB = 60.0   # speech analysis stays under ~40 dB of prediction gain


def prediction_gain_db(a: np.ndarray) -> np.ndarray:
    """Prediction gain Σ −10·log10(1 − k_i²) of each polynomial (N, p+1), from the step-down
    recursion's reflection coefficients k_i; ``inf`` where 1/A is unstable."""
    a = np.array(a, dtype=np.float64)
    gain = np.zeros(a.shape[0])
    with np.errstate(all="ignore"):
        for i in range(a.shape[1] - 1, 0, -1):
            k = a[:, i]
            ok = np.abs(k) < 1.0  # False for NaN too
            gain = np.where(ok, gain - 10.0 * np.log10(np.where(ok, 1.0 - k * k, 1.0)), np.inf)
            den = np.where(ok, 1.0 - k * k, 1.0)
            a = np.where(ok[:, None], (a[:, : i + 1] - k[:, None] * a[:, i::-1]) / den[:, None],
                         0.0)[:, :i]
    return gain


def lsf_to_lpc(lsf: np.ndarray) -> np.ndarray:
    """LPC polynomials (N, 17) of LSFs (N, 16) (float64 numpy), always stable.

    Ordered LSFs give a minimum-phase polynomial in exact arithmetic, but a pile of LSFs
    crowded together (only a damaged or forged stream has them; analysis never does) has an
    absurd gain or loses stability to rounding. Such rows get bandwidth expansion until their
    prediction gain is plausible;
    encoder and decoder run the same code, so they still agree.
    """
    a = _lsf_to_lpc(lsf)
    bad = ~(prediction_gain_db(a) <= MAX_GAIN_DB)
    gamma = 0.9 ** np.arange(a.shape[-1])
    for _ in range(20):
        if not bad.any():
            break
        a[bad] = a[bad] * gamma
        bad = ~(prediction_gain_db(a) <= MAX_GAIN_DB)
    a[bad] = np.eye(1, a.shape[-1])[0]   # give up on the row: a flat filter
    return a


def _lsf_to_lpc(lsf: np.ndarray) -> np.ndarray:
    lsf = np.asarray(lsf, dtype=np.float64).reshape(-1, lsf.shape[-1])

    def pad(v: np.ndarray, lr: tuple[int, int]) -> np.ndarray:
        out = np.zeros(v.shape[:-1] + (v.shape[-1] + lr[0] + lr[1],))   # np.pad costs ~20x
        out[..., lr[0]:lr[0] + v.shape[-1]] = v
        return out

    return _lsf_poly(lsf, np.cos, np.ones(lsf.shape[:-1] + (1,)), pad)


def _lsf_poly(lsf, cos, ones, pad):
    """A(z) = (P + Q)/2 from the odd (P) and even (Q) LSFs; numpy or torch via the helpers."""
    p = _poly_from_pairs(2 * cos(lsf[..., 0::2]), ones, pad)
    q = _poly_from_pairs(2 * cos(lsf[..., 1::2]), ones, pad)
    p = pad(p, (0, 1)) + pad(p, (1, 0))   # × (1 + z⁻¹)
    q = pad(q, (0, 1)) - pad(q, (1, 0))   # × (1 − z⁻¹)
    return (0.5 * (p + q))[..., : lsf.shape[-1] + 1]


def set_index(length: int, framing_hop: int, overlap: int, n_frames: int,
              offset: int = 0) -> np.ndarray:
    """Coefficient set per sample: 0 = previous packet's last set, j+1 = frame j's set."""
    t = np.arange(offset, offset + length)
    return np.clip((t - overlap) // framing_hop + 1, 0, n_frames).astype(np.int64)


def residual(x_ext: np.ndarray, sets: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Analysis filter: ``x_ext`` holds ORDER history samples then the samples to filter."""
    p = sets.shape[1] - 1
    win = np.lib.stride_tricks.sliding_window_view(np.asarray(x_ext, np.float64), p + 1)
    return np.einsum("nk,nk->n", win[:, ::-1], sets[idx])


def highpass(x: np.ndarray) -> np.ndarray:
    """The pre-processing high-pass alone (no pre-emphasis): the signal an LPC tier's decoder
    reproduces, rows filtered independently from zero state."""
    x2 = np.atleast_2d(np.asarray(x, np.float64))
    out = np.stack([_highpass_preemph(np.ascontiguousarray(row), HP_B, HP_A,
                                      np.zeros(3), 0.0) for row in x2])
    return out.reshape(np.shape(x))


class LPCEncoderState:
    """Per-channel encoder memory: the pre-filter, ORDER past samples, the last frame's set."""

    def __init__(self) -> None:
        self.pre = PreFilter()
        self.hist = np.zeros(ORDER, dtype=np.float64)
        self.prev: np.ndarray | None = None


class LPCDecoderState:
    """Per-channel decoder memory: synthesis and de-emphasis state, the last frame's set."""

    def __init__(self) -> None:
        self.mem = np.zeros(ORDER, dtype=np.float64)
        self.de = np.zeros(1, dtype=np.float64)
        self.prev: np.ndarray | None = None

    def synthesize(self, r: np.ndarray, sets: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return _synthesize(np.ascontiguousarray(r, np.float64), np.ascontiguousarray(sets),
                           idx, self.mem, PREEMPH, self.de).astype(np.float32)
