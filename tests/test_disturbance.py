"""The PESQ-style disturbance term on synthetic cases: what it rewards and what it punishes."""

from __future__ import annotations

import torch
from nwc.train.disturbance import loudness, pesq_disturbance


def _speechlike(seed: int = 0) -> torch.Tensor:
    """Two packets of a harmonic 150 Hz tone with a formant-like spectral tilt."""
    t = torch.arange(8192, dtype=torch.float32) / 16000
    x = sum((0.7 ** k) * torch.sin(2 * torch.pi * 150 * (k + 1) * t) for k in range(20))
    return torch.as_tensor(x).repeat(2, 1)


def test_added_energy_costs_more_than_the_same_energy_left_out() -> None:
    ref = _speechlike()
    louder = pesq_disturbance(ref * 2.0, ref, 16000)
    quieter = pesq_disturbance(ref * 0.5, ref, 16000)
    assert float(louder) > 2 * float(quieter) > 0


def test_noise_in_a_spectral_valley_costs_more_than_under_the_harmonics() -> None:
    ref = _speechlike()
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(ref.shape, generator=g)
    spec = torch.fft.rfft(noise)
    f = torch.fft.rfftfreq(ref.shape[-1], 1 / 16000)
    low = torch.fft.irfft(spec * (f < 1500), n=ref.shape[-1])     # where the harmonics are loud
    high = torch.fft.irfft(spec * (f > 5000), n=ref.shape[-1])    # where the signal is ~silent
    scale = 0.05 * ref.pow(2).mean().sqrt()
    low, high = low * scale / low.pow(2).mean().sqrt(), high * scale / high.pow(2).mean().sqrt()
    assert float(pesq_disturbance(ref + high, ref, 16000)) > float(
        pesq_disturbance(ref + low, ref, 16000))


def test_loudness_is_zero_below_the_threshold_and_one_at_the_mean_level() -> None:
    p = torch.tensor([0.0, 1e-9, 1.0, 10.0])
    value = loudness(p, 1e-6)
    assert value[0] == 0 and value[1] == 0
    assert float(value[2]) == 1.0 and float(value[3]) > 1.0


def test_gradient_is_finite_for_silence_and_a_perfect_decode() -> None:
    ref = torch.cat([_speechlike()[:, :4096], torch.zeros(2, 4096)], dim=1)
    rec = ref.clone().requires_grad_(True)
    (pesq_disturbance(rec + 1e-3 * torch.randn_like(ref), ref, 16000)
     + pesq_disturbance(rec, ref, 16000)).backward()
    assert rec.grad is not None and torch.isfinite(rec.grad).all()
