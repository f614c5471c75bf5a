"""Where a codec's error lies: the noise profile of a decoded signal against its reference.

PESQ-WB's disturbance model punishes energy a codec *adds* (in weak bands and spectral
valleys) much more than energy it leaves out, and weighs quiet frames like loud ones; a
waveform SNR sees neither. This module measures both on aligned mono signals:

- ``band_energy_profile``: the log-energy difference (decoded − reference) of 23
  critical-band-like bands in 32 ms frames of the active (speech) part, split into *added*
  (mean positive difference, dB) and *missing* (mean negative difference, dB), overall and
  above 3.7 kHz;
- ``noise_to_signal``: error-to-signal power (dB) over 20 ms frames, in the quietest and
  loudest 30 % of the active frames, and per band (< 1 kHz, 1–3.5 kHz, > 3.5 kHz).
"""

from __future__ import annotations

import numpy as np

N_BANDS = 23
PROFILE_FRAME_S = 0.032
NSR_FRAME_S = 0.020
ACTIVE_DB = 40.0      # a frame is active within this many dB of the loudest frame
SHARE = 0.3           # the quietest / loudest share of active frames
HIGH_HZ = 3700.0
NSR_BANDS = ((0.0, 1000.0), (1000.0, 3500.0), (3500.0, None))
FLOOR = 1e-10


def _frames(x: np.ndarray, n: int) -> np.ndarray:
    count = len(x) // n
    return x[: count * n].reshape(count, n)


def band_edges(rate: int, n_bands: int = N_BANDS) -> np.ndarray:
    """Band edges (Hz), equally spaced on the Bark scale from 50 Hz to rate/2."""
    def bark(f: np.ndarray) -> np.ndarray:
        return 13 * np.arctan(0.00076 * f) + 3.5 * np.arctan((f / 7500.0) ** 2)

    grid = np.linspace(0, rate / 2, 4096)
    z = np.linspace(bark(np.array(50.0)), bark(np.array(rate / 2)), n_bands + 1)
    return np.interp(z, bark(grid), grid)


def _active(power: np.ndarray) -> np.ndarray:
    db = 10 * np.log10(power + FLOOR)
    return db > db.max() - ACTIVE_DB


def band_energies(x: np.ndarray, rate: int, frame_s: float = PROFILE_FRAME_S,
                  n_bands: int = N_BANDS) -> np.ndarray:
    """Energy (frames, bands) of Hann-windowed frames in each band of ``band_edges``."""
    n = int(round(frame_s * rate))
    spec = np.abs(np.fft.rfft(_frames(x, n) * np.hanning(n), axis=1)) ** 2
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    edges = band_edges(rate, n_bands)
    idx = np.clip(np.searchsorted(edges, freqs, side="right") - 1, 0, n_bands - 1)
    out = np.zeros((spec.shape[0], n_bands))
    for b in range(n_bands):
        sel = (idx == b) & (freqs >= edges[0])
        out[:, b] = spec[:, sel].sum(axis=1)
    return out


def band_energy_profile(ref: np.ndarray, deg: np.ndarray, rate: int) -> dict[str, float]:
    """Added / missing band energy (dB) of ``deg`` against ``ref`` in the active frames."""
    er, ed = band_energies(ref, rate), band_energies(deg, rate)
    m = min(len(er), len(ed))
    er, ed = er[:m], ed[:m]
    act = _active(er.sum(axis=1))
    diff = 10 * np.log10(ed[act] + FLOOR) - 10 * np.log10(er[act] + FLOOR)
    high = band_edges(rate)[:-1] >= HIGH_HZ
    if not diff.size:
        return {k: float("nan") for k in ("abs_db", "added_db", "missing_db", "added_high_db")}
    return {"abs_db": float(np.abs(diff).mean()),
            "added_db": float(np.maximum(diff, 0).mean()),
            "missing_db": float(np.maximum(-diff, 0).mean()),
            "added_high_db": float(np.maximum(diff[:, high], 0).mean())
            if high.any() else float("nan")}


def _nsr_db(err: np.ndarray, sig: np.ndarray) -> float:
    return float(10 * np.log10((err.sum() + FLOOR) / (sig.sum() + FLOOR)))


def noise_to_signal(ref: np.ndarray, deg: np.ndarray, rate: int) -> dict[str, float]:
    """Error-to-signal power (dB) in the quietest and loudest active frames, and per band."""
    n = int(round(NSR_FRAME_S * rate))
    m = min(len(ref), len(deg))
    fr, fe = _frames(ref[:m], n), _frames(deg[:m] - ref[:m], n)
    pr, pe = (fr ** 2).sum(axis=1), (fe ** 2).sum(axis=1)
    act = np.flatnonzero(_active(pr))
    order = act[np.argsort(pr[act])]
    k = max(1, int(round(SHARE * len(order))))
    out = {"quiet_db": _nsr_db(pe[order[:k]], pr[order[:k]]),
           "loud_db": _nsr_db(pe[order[-k:]], pr[order[-k:]])}
    spec_r = np.abs(np.fft.rfft(fr[act] * np.hanning(n), axis=1)) ** 2
    spec_e = np.abs(np.fft.rfft(fe[act] * np.hanning(n), axis=1)) ** 2
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    for lo, hi in NSR_BANDS:
        sel = (freqs >= lo) & (freqs < (hi if hi is not None else np.inf))
        name = f"band_{int(lo)}_{int(hi) if hi else 'top'}_db"
        out[name] = _nsr_db(spec_e[:, sel], spec_r[:, sel])
    return out


def profile(ref: np.ndarray, deg: np.ndarray, rate: int) -> dict[str, float]:
    """Both measurements of aligned mono signals, in one flat dict."""
    return {**band_energy_profile(ref, deg, rate), **noise_to_signal(ref, deg, rate)}
