"""The noise profile (nwc.evaluation.noise) on synthetic signals with a known error."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import speech_like
from nwc.evaluation import noise

SR = 16000


def _band_noise(x: np.ndarray, lo: float, hi: float, level_db: float, seed: int = 0
                ) -> np.ndarray:
    """White noise limited to lo..hi Hz, ``level_db`` relative to ``x``'s power."""
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.standard_normal(len(x)))
    f = np.fft.rfftfreq(len(x), 1 / SR)
    spec[(f < lo) | (f >= hi)] = 0
    n = np.fft.irfft(spec, len(x))
    return n * np.sqrt(np.mean(x ** 2) / np.mean(n ** 2)) * 10 ** (level_db / 20)


@pytest.fixture(scope="module")
def ref() -> np.ndarray:
    return speech_like(2.0, SR, seed=4)[:, 0].astype(np.float64)


def test_identical_signals_have_no_added_or_missing_energy(ref: np.ndarray) -> None:
    p = noise.band_energy_profile(ref, ref, SR)
    assert p["added_db"] == p["missing_db"] == p["abs_db"] == 0.0


def test_high_band_noise_is_added_energy_above_3_7_khz(ref: np.ndarray) -> None:
    deg = ref + _band_noise(ref, 4500, 8000, -20)
    p = noise.profile(ref, deg, SR)
    assert p["added_high_db"] > 3.0 and p["missing_db"] < 0.1
    assert p["added_high_db"] > 2 * p["added_db"]  # concentrated in the high bands
    assert p["band_3500_top_db"] > p["band_0_1000_db"] + 20  # and so is the noise


def test_a_low_pass_is_missing_energy_not_added(ref: np.ndarray) -> None:
    spec = np.fft.rfft(ref)
    spec[np.fft.rfftfreq(len(ref), 1 / SR) > 3000] = 0
    deg = np.fft.irfft(spec, len(ref))
    p = noise.band_energy_profile(ref, deg, SR)
    assert p["missing_db"] > 3.0 and p["added_db"] < 0.5


def test_noise_at_a_fixed_level_hurts_quiet_frames_most(ref: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    deg = ref + 0.003 * rng.standard_normal(len(ref))  # constant noise, varying signal
    p = noise.noise_to_signal(ref, deg, SR)
    assert p["quiet_db"] > p["loud_db"] + 3
    scaled = noise.noise_to_signal(ref, ref * 1.1, SR)  # error ∝ signal: same in both
    assert scaled["quiet_db"] == pytest.approx(scaled["loud_db"], abs=0.5)
    assert scaled["loud_db"] == pytest.approx(20 * np.log10(0.1), abs=0.5)
