"""Noise-to-mask ratio of a decoded signal: how far its coding noise sits above what the
reference masks (MPEG-1 psychoacoustic model 1, ``nwc.train.psychoacoustic``).

The music study reports it beside ViSQOL (issue 17): ViSQOL says how the decode sounds to a
model of the auditory nerve, NMR whether the noise lies under the mask the psychoacoustic
loss trains against. Like PEAQ's *Total NMR*, the per-frame mean of noise power over mask
power (bins of 512-point Hann frames, the file's level as the playback level: full scale =
96 dB SPL) is averaged linearly over the frames that hold sound, then put in dB. Below 0 dB
the noise is, on average, masked; each 10 dB is ten times the unmasked noise power.

Needs torch (the model is vectorised in it); imported only by ``bench/quality.py --music``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

N_FFT = 512
SILENT_FRAME = 1e-8       # mean square of a reference frame this quiet (-80 dBFS): skipped
RATIO_FLOOR = 1e-12       # a perfect decode reads -120 dB, not -inf


def _frames(x: np.ndarray, n: int) -> np.ndarray:
    """(F, n) non-overlapping frames, the last zero-padded."""
    count = max(1, -(-x.shape[0] // n))
    out = np.zeros(count * n)
    out[: x.shape[0]] = x
    return out.reshape(count, n)


def frame_nmr(ref: np.ndarray, deg: np.ndarray, rate: int) -> np.ndarray:
    """Per frame of the reference that holds sound: mean over bins of noise / mask power."""
    from nwc.train import psychoacoustic as pa

    ref = np.asarray(ref, np.float64).reshape(-1)
    deg = np.asarray(deg, np.float64).reshape(-1)[: ref.shape[0]]
    deg = np.pad(deg, (0, ref.shape[0] - deg.shape[0]))
    fr, fd = _frames(ref, N_FFT), _frames(deg, N_FFT)
    keep = np.mean(fr ** 2, axis=1) > SILENT_FRAME
    if not keep.any():
        return np.zeros(0)
    fr, fd = fr[keep], fd[keep]
    mask_db = pa.signal_masking_threshold(fr.reshape(-1), rate, n_fft=N_FFT, hop=N_FFT)
    noise = pa.spectrum_power(torch.from_numpy(fd - fr)).numpy()
    ratio = noise / 10.0 ** (mask_db[: noise.shape[0]].astype(np.float64) / 10.0)
    return ratio.mean(axis=1)


def noise_to_mask_db(ref: np.ndarray, deg: np.ndarray, rate: int) -> float:
    """Total NMR in dB of aligned mono ``deg`` against ``ref`` (NaN if the reference is
    silent throughout)."""
    per = frame_nmr(ref, deg, rate)
    if per.size == 0:
        return math.nan
    return float(10.0 * np.log10(max(float(per.mean()), RATIO_FLOOR)))
