"""Music metrics of the bench: the noise-to-mask ratio (bench/nmr.py) and band energies
(bench/bandwidth.py), on signals with a known noise level or band limit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.nmr import frame_nmr, noise_to_mask_db

RATE = 44100


def _music(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """A chord of three partials with a little noise floor, at -12 dBFS."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    x = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 554.0, 1320.0))
    x = x + 0.01 * rng.standard_normal(t.size)
    return 0.25 * x / np.abs(x).max()


def test_ten_db_more_noise_reads_ten_db_more_nmr() -> None:
    ref = _music()
    noise = np.random.default_rng(1).standard_normal(ref.size)
    a = noise_to_mask_db(ref, ref + 1e-3 * noise, RATE)
    b = noise_to_mask_db(ref, ref + np.sqrt(10) * 1e-3 * noise, RATE)
    assert b - a == pytest.approx(10.0, abs=0.3)


def test_masked_noise_reads_below_zero_and_loud_noise_above() -> None:
    ref = _music()
    noise = np.random.default_rng(2).standard_normal(ref.size)
    assert noise_to_mask_db(ref, ref + 1e-5 * noise, RATE) < 0.0   # ~-100 dBFS under a chord
    assert noise_to_mask_db(ref, ref + 0.1 * noise, RATE) > 10.0    # -20 dBFS white noise
    assert noise_to_mask_db(ref, ref, RATE) == pytest.approx(-120.0)


def test_silent_frames_are_skipped_and_lengths_follow_the_reference() -> None:
    ref = np.concatenate([np.zeros(RATE // 2), _music(0.5)])
    per = frame_nmr(ref, ref[:-100], RATE)          # a decode 100 samples short: zero-padded
    assert per.size == -(-(RATE // 2) // 512) or per.size == -(-(RATE // 2) // 512) + 1
    assert math.isnan(noise_to_mask_db(np.zeros(4000), np.ones(4000), RATE))


def test_band_energy_finds_a_tone_and_a_band_limit() -> None:
    from bench.bandwidth import band_energy_db, is_full_band, lowpass
    t = np.arange(RATE) / RATE
    tone = np.sin(2 * np.pi * 1000 * t)
    e = band_energy_db(tone, RATE)
    assert e.argmax() == 0 and e[0] - e[1:].max() > 60
    noise = np.random.default_rng(0).standard_normal(RATE)
    assert is_full_band(band_energy_db(noise, RATE))
    cut = band_energy_db(lowpass(noise, 12000, RATE), RATE)
    assert not is_full_band(cut) and cut[-1] < cut[0] - 50
