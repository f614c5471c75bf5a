"""Band limits: the encoder says where each packet's input ends, the decoder removes the noise
its coding put above that.

A waveform autoencoder short of bits leaves a noise floor across the whole band, also where
the input had nothing (band-limited recordings, MIDI renderings, sound effects, speech that
was narrow-band before it was resampled). Its learned filterbank cannot know where the input
stopped, but the encoder can, at one byte per channel and packet. ViSQOL (audio mode) on the
music dev clips' shipped first layer: 2.69 → 2.97 on a clip that ends at 16.5 kHz, 2.84 → 3.44
at 13 kHz, 2.91 → 3.36 at 10 kHz with an ideal low-pass at the clip's own bandwidth; unchanged
on full-band clips (``docs/music-study.md``).

The limit travels as a 1.1 extension record (``formats/extension.py``): a 1.0 decoder ignores
it and decodes as before. The decoder filters each windowed frame before the overlap-add with
a minimum-phase FIR (causal: no added delay; its ``SPILL`` samples of tail reach into the next
frames, which the overlap-add carries), so the filtered stream is exactly the overlap-added
signal through that filter while the limit stays the same, and crossfades where it changes.
"""

from __future__ import annotations

import functools

import numpy as np

from ..formats.extension import BAND_STEPS

TAPS = 128               # minimum-phase FIR length
SPILL = TAPS - 1         # samples a filtered frame reaches past its end
FLOOR_DB = 60.0          # content is what lies within this of the packet's loudest band
BIN_HZ = 250.0           # the measurement's band width
MARGIN = 2               # codes above the measured edge (~170 Hz at 44.1 kHz) kept as pass-band
FULL = 235               # codes at or above this (≥ 92 % of Nyquist): no limit
TRANSITION = 0.05        # the filter's transition width, in units of the Nyquist frequency
STOP_DB = -70.0          # the filter's stop-band floor
SILENT_RMS = 1e-6        # a channel this quiet carries no limit (there is nothing to shape)


def measure(x: np.ndarray, rate: int) -> list[int]:
    """Band-limit codes of each channel of ``x`` (channels, samples): the highest band within
    ``FLOOR_DB`` of the loudest, plus a margin, in steps of 1/256 of the Nyquist frequency;
    0 where the content reaches the top of the band (or the channel is silent)."""
    out = []
    n = x.shape[-1]
    if n < 64:
        return [0] * x.shape[0]
    win = np.hanning(n).astype(np.float64)
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * win, axis=-1)) ** 2
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    nyq = rate / 2.0
    edges = np.arange(0.0, nyq, BIN_HZ)
    idx = np.searchsorted(freqs, edges)
    for c in range(x.shape[0]):
        if np.sqrt(np.mean(x[c].astype(np.float64) ** 2)) < SILENT_RMS:
            out.append(0)
            continue
        bands = np.add.reduceat(spec[c], idx) + 1e-30
        db = 10.0 * np.log10(bands)
        live = np.nonzero(db > db.max() - FLOOR_DB)[0]
        top = min(nyq, edges[live[-1]] + BIN_HZ)
        code = int(np.ceil(top / nyq * BAND_STEPS)) + MARGIN
        out.append(0 if code >= FULL else code)
    return out


@functools.cache
def spectrum(code: int, nfft: int) -> np.ndarray:
    """The ``rfft`` (size ``nfft`` ≥ frame + TAPS) of the minimum-phase low-pass for band-limit
    ``code``: pass-band to ``code / 256`` of Nyquist, a raised-cosine transition of
    ``TRANSITION``, then ``STOP_DB``; minimum phase by the real cepstrum (folded)."""
    return np.fft.rfft(taps(code), nfft).astype(np.complex64)


@functools.cache
def taps(code: int) -> np.ndarray:
    """The minimum-phase FIR (``TAPS`` taps) of band-limit ``code``."""
    grid = 4096
    f = np.linspace(0.0, 1.0, grid // 2 + 1)        # in units of Nyquist
    edge = code / BAND_STEPS
    t = np.clip((f - edge) / TRANSITION, 0.0, 1.0)
    floor = 10.0 ** (STOP_DB / 20.0)
    mag = floor + (1.0 - floor) * 0.5 * (1.0 + np.cos(np.pi * t))
    cep = np.fft.irfft(np.log(mag), grid)
    fold = np.zeros(grid)
    fold[0], fold[grid // 2] = cep[0], cep[grid // 2]
    fold[1: grid // 2] = 2.0 * cep[1: grid // 2]
    h = np.fft.irfft(np.exp(np.fft.rfft(fold)), grid)[:TAPS]
    fade = np.ones(TAPS)
    fade[-16:] = 0.5 + 0.5 * np.cos(np.pi * (np.arange(16) + 0.5) / 16)
    return (h * fade).astype(np.float32)


def filter_frames(frames: np.ndarray, code: int) -> np.ndarray:
    """Windowed frames (n, frame) through band-limit ``code``'s filter: (n, frame + SPILL),
    the full linear convolution."""
    n = frames.shape[-1] + SPILL
    nfft = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(frames, nfft, axis=-1) * spectrum(code, nfft), nfft, axis=-1)
    return y[..., :n].astype(np.float32)


def channel_codes(codes: list[int] | None, channels: int, mid_side: bool) -> list[int]:
    """The limit for each coded channel: its own in L/R; in M/S the wider of L's and R's for
    both (M and S hold both), none if either has none."""
    if codes is None:
        return [0] * channels
    if mid_side and channels == 2:
        wide = 0 if 0 in codes else max(codes)
        return [wide, wide]
    return list(codes)
