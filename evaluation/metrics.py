"""Objective quality of a decoded signal against its reference: alignment, SI-SNR, metrics.

Shared by ``nwc eval``, ``nwc encode --verify`` and ``bench/quality.py``, so the three agree.
Only numpy and soxr are needed at import; PESQ (``pesq``), STOI (``pystoi``) and ViSQOL
(``visqol-python``) are the optional ``eval`` extra, imported when a metric runs, and a
missing one is reported as skipped rather than failing the rest.

Conventions: signals are 1-D float64 mono; a *delay* ``d`` (samples, may be fractional) means
the degraded signal trails the reference, ``deg[n] ≈ ref[n - d]``.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

MAX_LAG_S = 0.5  # alignment search range, seconds either way
# A normalised waveform cross-correlation peak below this means the output is not
# waveform-coherent with the reference (e.g. Codec2 synthesises its own phase); such signals
# are aligned on their amplitude envelopes instead. Waveform codecs peak at 0.6-0.99.
WAVEFORM_PEAK_MIN = 0.3
ENV_CUTOFF_HZ = 30.0
PESQ_RATE = 16000  # PESQ-WB (P.862.2) and, for comparability with it, STOI run at 16 kHz
VISQOL_RATES = {"speech": 16000, "audio": 48000}
EXTRA_HINT = 'pip install "nwc[eval]"'

#: metric -> (module to import, what pip installs)
PACKAGES = {
    "pesq_wb": ("pesq", "pesq"),
    "stoi": ("pystoi", "pystoi"),
    "visqol": ("visqol", "visqol-python"),
}
METRICS = tuple(PACKAGES)


def missing_packages(metrics: tuple[str, ...] = METRICS) -> dict[str, str]:
    """Metrics whose package cannot be imported, with the pip name of that package."""
    out = {}
    for m in metrics:
        module, pip_name = PACKAGES[m]
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - a broken install counts as missing too
            out[m] = pip_name
    return out


# --------------------------------------------------------------------------------------
# Signals


def mono(x: np.ndarray) -> np.ndarray:
    """(frames, channels) or (frames,) to a float64 mono mixdown."""
    x = np.asarray(x, dtype=np.float64)
    return x.mean(axis=1) if x.ndim == 2 else x


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample a mono signal with soxr (very high quality); a no-op at equal rates."""
    x = np.asarray(x, dtype=np.float64)
    if rate_in == rate_out or len(x) == 0:
        return x
    import soxr

    return np.asarray(soxr.resample(x, rate_in, rate_out, quality="VHQ"), dtype=np.float64)


def _fft_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n: fast sizes for numpy's FFT."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _cross_spectrum(ref: np.ndarray, deg: np.ndarray) -> tuple[np.ndarray, int]:
    """rfft of the linear cross-correlation ``c[k] = sum_n deg[n + k] ref[n]`` and its size."""
    n = _fft_len(len(ref) + len(deg))  # no circular wrap between positive and negative lags
    return np.conj(np.fft.rfft(ref, n)) * np.fft.rfft(deg, n), n


def xcorr(ref: np.ndarray, deg: np.ndarray, max_lag: int) -> np.ndarray:
    """Normalised cross-correlation at lags -max_lag..max_lag (index ``max_lag + k``: deg
    trailing ref by ``k``); all zeros for an empty or silent signal."""
    out = np.zeros(2 * max_lag + 1)
    norm = math.sqrt(float(np.dot(ref, ref)) * float(np.dot(deg, deg)))
    if len(ref) == 0 or len(deg) == 0 or norm <= 0.0:
        return out
    p, n = _cross_spectrum(ref, deg)
    c = np.fft.irfft(p, n) / norm
    lo, hi = max(-max_lag, -len(ref) + 1), min(max_lag, len(deg) - 1)
    lags = np.arange(lo, hi + 1)
    out[lags + max_lag] = c[lags % n]
    return out


def refine_delay(ref: np.ndarray, deg: np.ndarray, lag: int) -> float:
    """Sub-sample delay near the integer cross-correlation peak ``lag``.

    A parabola through the three samples around the peak gives a first estimate (biased by
    up to ~0.1 sample on band-limited signals); Newton steps on the band-limited
    (trigonometric) interpolation of the cross-correlation, evaluated exactly from its
    spectrum, then find the true maximum.
    """
    p, n = _cross_spectrum(ref, deg)
    c = np.fft.irfft(p, n)
    y0, ym, yp = c[lag % n], c[(lag - 1) % n], c[(lag + 1) % n]
    curv = ym - 2 * y0 + yp
    tau = lag + (0.5 * (ym - yp) / curv if curv < 0 else 0.0)
    tau = min(max(tau, lag - 0.5), lag + 0.5)
    k = np.arange(len(p))
    w = np.where((k == 0) | ((n % 2 == 0) & (k == n // 2)), 1.0, 2.0)  # rfft's folded bins
    omega = 2 * np.pi * k / n
    wp = w * p
    for _ in range(20):
        z = wp * np.exp(1j * omega * tau)
        d1 = -float(np.dot(omega, z.imag))
        d2 = -float(np.dot(omega * omega, z.real))
        if d2 >= 0:  # not at a maximum: keep the parabolic estimate
            break
        step = -d1 / d2
        tau = min(max(tau + step, lag - 1.0), lag + 1.0)
        if abs(step) < 1e-7:
            break
    return float(tau)


def shift(x: np.ndarray, delay: float, length: int | None = None) -> np.ndarray:
    """Undo a delay: ``y[n] = x(n + delay)`` for ``n < length`` (default ``len(x)``).

    A fractional delay is applied as a linear phase on the spectrum of a zero-padded copy
    (band-limited interpolation); the integer part is a plain slice. Outside ``x`` is zero.
    """
    x = np.asarray(x, dtype=np.float64)
    length = len(x) if length is None else length
    i = math.floor(delay)
    f = delay - i
    if f > 1 - 1e-9:
        i, f = i + 1, 0.0
    if f < 1e-9 or len(x) == 0:
        z, off = x, 0
    else:
        off = 64  # room for the interpolation's tails before and after x
        m = _fft_len(len(x) + 2 * off)
        buf = np.zeros(m)
        buf[off:off + len(x)] = x
        spec = np.fft.rfft(buf) * np.exp(2j * np.pi * np.arange(m // 2 + 1) * f / m)
        z = np.fft.irfft(spec, m)  # z[off + t] = x(t + f)
    y = np.zeros(length)
    lo, hi = max(0, -(off + i)), min(length, len(z) - off - i)
    if hi > lo:
        y[lo:hi] = z[off + i + lo:off + i + hi]
    return y


def align_at(ref: np.ndarray, deg: np.ndarray, delay: float) -> tuple[np.ndarray, np.ndarray]:
    """Undo ``delay`` on ``deg`` and trim both signals to the span they have in common."""
    shifted = shift(deg, delay, len(ref))
    start = max(0, math.ceil(-delay - 1e-9))
    end = min(len(ref), math.floor(len(deg) - 1 - delay + 1e-9) + 1)
    end = max(end, start)
    return np.asarray(ref[start:end], dtype=np.float64), shifted[start:end]


def envelope(x: np.ndarray, rate: int, cutoff_hz: float = ENV_CUTOFF_HZ) -> np.ndarray:
    """Zero-mean amplitude envelope: |x| through a zero-phase Gaussian low-pass (-3 dB at
    ``cutoff_hz``), for aligning outputs whose waveform does not follow the reference."""
    x = np.abs(np.asarray(x, dtype=np.float64))
    if len(x) == 0:
        return x
    pad = int(rate / cutoff_hz)
    n = _fft_len(len(x) + 2 * pad)
    f = np.fft.rfftfreq(n, 1.0 / rate)
    gain = np.exp(-0.5 * math.log(2) * (f / cutoff_hz) ** 2)
    e = np.fft.irfft(np.fft.rfft(x, n) * gain, n)[: len(x)]
    return e - e.mean()


@dataclass
class Alignment:
    """How ``deg`` was aligned to ``ref``, and both signals trimmed to their common span."""

    delay: float       # samples, deg trailing ref
    peak: float        # normalised waveform cross-correlation at the integer peak
    method: str        # "waveform" (sub-sample), "envelope" (integer) or "none"
    ref: np.ndarray
    deg: np.ndarray


def align(ref: np.ndarray, deg: np.ndarray, rate: int, max_lag_s: float = MAX_LAG_S) -> Alignment:
    """Find the delay of ``deg`` (FFT cross-correlation, then sub-sample refinement) and undo it.

    Falls back to the integer peak of the envelopes' cross-correlation when the waveform peak
    is below ``WAVEFORM_PEAK_MIN``.
    """
    ref = np.asarray(ref, dtype=np.float64)
    deg = np.asarray(deg, dtype=np.float64)
    max_lag = max(0, min(int(round(max_lag_s * rate)), max(len(ref), len(deg)) - 1))
    wave = xcorr(ref, deg, max_lag)
    i = int(np.argmax(wave))
    peak = float(wave[i])
    if not wave.any():
        delay, method = 0.0, "none"
    elif peak >= WAVEFORM_PEAK_MIN:
        delay, method = refine_delay(ref, deg, i - max_lag), "waveform"
    else:
        env = xcorr(envelope(ref, rate), envelope(deg, rate), max_lag)
        delay, method = (float(np.argmax(env) - max_lag), "envelope") if env.any() else (0.0,
                                                                                          "none")
    r, d = align_at(ref, deg, delay)
    return Alignment(delay, peak, method, r, d)


def si_snr(ref: np.ndarray, deg: np.ndarray) -> float:
    """Scale-invariant SNR in dB (zero-mean; inf for a perfect copy, nan for a silent ref)."""
    r = ref - ref.mean()
    d = deg - deg.mean()
    rr = float(np.dot(r, r))
    if rr <= 0.0:
        return math.nan
    s = (float(np.dot(d, r)) / rr) * r
    e = d - s
    ee = float(np.dot(e, e))
    ss = float(np.dot(s, s))
    if ee <= 0.0:
        return math.inf
    if ss <= 0.0:
        return -math.inf
    return 10.0 * math.log10(ss / ee)


def spectrogram_db(x: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Power spectrogram in dB (Hann, ~32 ms window, 75 % overlap): (freqs, times, S[f, t])."""
    win = 1 << max(6, round(math.log2(0.032 * rate)))
    hop = win // 4
    x = np.asarray(x, dtype=np.float64)
    if len(x) < win:
        x = np.concatenate([x, np.zeros(win - len(x))])
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop]
    spec = np.abs(np.fft.rfft(frames * np.hanning(win), axis=1)) ** 2
    s_db = 10 * np.log10(spec.T + 1e-12)
    times = (np.arange(frames.shape[0]) * hop + win / 2) / rate
    return np.fft.rfftfreq(win, 1.0 / rate), times, s_db


# --------------------------------------------------------------------------------------
# Metrics (the optional packages)


def pesq_wb(ref: np.ndarray, deg: np.ndarray, rate: int) -> float:
    """PESQ-WB (ITU-T P.862.2) MOS-LQO, about 1.0-4.64, at 16 kHz (``pesq`` package)."""
    from pesq import pesq

    return float(pesq(PESQ_RATE, resample(ref, rate, PESQ_RATE), resample(deg, rate, PESQ_RATE),
                      "wb"))


def stoi(ref: np.ndarray, deg: np.ndarray, rate: int) -> float:
    """Classic STOI, 0-1, at 16 kHz (``pystoi``; it resamples to 10 kHz itself)."""
    from pystoi import stoi as _stoi

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        v = float(_stoi(resample(ref, rate, PESQ_RATE), resample(deg, rate, PESQ_RATE),
                        PESQ_RATE, extended=False))
    # pystoi warns and returns 1e-5 when too little non-silent audio is left: not a score.
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        raise ValueError("too little non-silent audio for STOI (needs about 0.4 s)")
    return v


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence C-level stderr (TensorFlow Lite announces its CPU delegate on file 2)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class Visqol:
    """ViSQOL v3 via the pure-Python ``visqol-python`` port, in speech or audio mode.

    Speech mode runs at 16 kHz with the deep-lattice mapper (the C++ default; it needs
    ``ai-edge-litert``, else the polynomial mapper, which reads higher); audio mode runs at
    48 kHz with the bundled SVR mapper. ``mapper`` says which one actually runs.
    """

    def __init__(self, mode: str = "speech") -> None:
        from visqol import VisqolApi

        if mode not in VISQOL_RATES:
            raise ValueError(f"ViSQOL mode must be speech or audio, not {mode!r}")
        self.mode = mode
        self.rate = VISQOL_RATES[mode]
        self.api = VisqolApi()
        with warnings.catch_warnings(), _quiet_stderr():
            warnings.simplefilter("ignore")
            if mode == "audio":
                self.api.create(mode="audio")
            else:
                try:
                    self.api.create(mode="speech", use_lattice_model=True)
                except ImportError:
                    self.api.create(mode="speech", use_lattice_model=False)
        # Ask the engine what it built rather than trusting what was requested.
        mapper = type(getattr(getattr(self.api, "_manager", None), "quality_mapper", None))
        name = mapper.__name__.lower()
        self.mapper = ("deep-lattice" if "tflite" in name or "lattice" in name
                       else "SVR" if "svr" in name else "polynomial")

    @property
    def description(self) -> str:
        return visqol_description(self.mode, self.rate, self.mapper)

    def __call__(self, ref: np.ndarray, deg: np.ndarray, rate: int) -> float:
        """MOS-LQO (1-5) of ``deg`` against ``ref``, both at ``rate``."""
        r, d = resample(ref, rate, self.rate), resample(deg, rate, self.rate)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(self.api.measure_from_arrays(r, d, self.rate).moslqo)


def visqol_description(mode: str, rate: int, mapper: str) -> str:
    """What ran, e.g. 'speech mode, 16 kHz, deep-lattice mapper (as the C++ default)'."""
    extra = {"polynomial": " (reads 1-2 MOS higher than the C++ default lattice)",
             "deep-lattice": " (as the C++ default)"}.get(mapper, "")
    return f"{mode} mode, {rate // 1000} kHz, {mapper} mapper{extra}"


_VISQOL: dict[str, Visqol] = {}


def visqol_for(mode: str) -> Visqol:
    """A ViSQOL engine for ``mode``, created once per process (creation loads models)."""
    if mode not in _VISQOL:
        _VISQOL[mode] = Visqol(mode)
    return _VISQOL[mode]


def pick_mode(mode: str, rate: int) -> str:
    """``auto`` is speech for signals at up to 24 kHz (speech tiers' rates), else audio."""
    if mode == "auto":
        return "speech" if rate <= 24000 else "audio"
    return mode


def _why(e: Exception) -> str:
    """'Type: message', with the bytes messages of the pesq package decoded."""
    msg = e.args[0] if len(e.args) == 1 else str(e)
    if isinstance(msg, bytes):
        msg = msg.decode(errors="replace")
    return f"{type(e).__name__}: {msg}".rstrip(": ")


def evaluate(ref: np.ndarray, deg: np.ndarray, rate: int, mode: str = "auto",
             metrics: tuple[str, ...] = METRICS) -> tuple[dict, Alignment]:
    """Align mono ``deg`` to mono ``ref`` (both at ``rate``) and measure it.

    Returns a JSON-ready report (delay, correlation, SI-SNR, the metrics that could run, and
    ``skipped``: metric -> why not) and the alignment (for plots).
    """
    al = align(ref, deg, rate)
    mode = pick_mode(mode, rate)
    rep: dict = {
        "rate": rate,
        "delay_samples": al.delay,
        "delay_ms": 1000 * al.delay / rate,
        "correlation": al.peak,
        "alignment": al.method,
        "compared_s": len(al.ref) / rate,
        "si_snr_db": si_snr(al.ref, al.deg) if len(al.ref) else math.nan,
    }
    skipped: dict[str, str] = {}
    for m, pip_name in missing_packages(metrics).items():
        skipped[m] = f"{pip_name} not installed ({EXTRA_HINT})"
    for m in metrics:
        rep[m] = None
        if m in skipped:
            continue
        try:
            if m == "pesq_wb":
                rep[m] = pesq_wb(al.ref, al.deg, rate)
            elif m == "stoi":
                rep[m] = stoi(al.ref, al.deg, rate)
            else:
                v = visqol_for(mode)
                rep.update(visqol_mode=v.mode, visqol_rate=v.rate, visqol_mapper=v.mapper)
                rep[m] = v(al.ref, al.deg, rate)
        except Exception as e:  # noqa: BLE001 - one failing metric must not hide the others
            skipped[m] = f"failed: {_why(e)}"
    rep["skipped"] = skipped
    return rep, al
