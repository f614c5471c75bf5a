"""Tests of MPEG-1 psychoacoustic model 1 (train/psychoacoustic.py) and the SPL'20 loss terms.

Expected values are worked by hand from ISO/IEC 11172-3 Annex D: a full-scale sine centred on
bin k has |X|² = 1/6 there and 1/24 in bins k±1 (before the 96-dB offset), so its peak reads
96 dB and its tonal masker (power sum of k-1..k+1) 96 + 10 log10(1.5) = 97.76 dB.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import speech_like
from nwc.train import psychoacoustic as pa
from nwc.train.losses import noise_to_mask_loss, priority_weighted_loss

TONE_DB = 96.0 + 10.0 * math.log10(1.5)


def sine(sample_rate: int, freq: float, amp: float = 1.0, n: int = 512,
         phase: float = 0.3) -> torch.Tensor:
    t = np.arange(n) / sample_rate
    return torch.tensor(amp * np.sin(2 * np.pi * freq * t + phase), dtype=torch.float32)


def centred(sample_rate: int, k: int, amp: float = 1.0) -> torch.Tensor:
    """A sine exactly on bin ``k`` of a 512-point FFT (no leakage beyond k±1 with Hann)."""
    return sine(sample_rate, k * sample_rate / 512, amp, phase=0.0)


# --------------------------------------------------------------------------- tables


def test_tables_reproduce_annex_d_44k() -> None:
    t = pa.tables(44100)
    assert len(t.grid) == 106 and t.grid[-1] == 232          # Table D.1b: 106 lines
    assert list(t.grid[47:50]) == [48, 50, 52] and list(t.grid[71:74]) == [96, 100, 104]
    # (frequency, Bark, threshold in quiet) rows of table D.1b.
    for k, hz, z, ath in [(1, 86.13, 0.850, 25.87), (12, 1033.59, 8.723, 3.25),
                          (39, 3359.18, 16.260, -4.98), (232, 19982.81, 24.573, 68.00)]:
        assert t.freq[k] == pytest.approx(hz, abs=0.01)
        assert t.bark[k] == pytest.approx(z, abs=0.002)
        assert t.ath[k] == pytest.approx(ath, abs=0.01)


def test_tables_other_rates() -> None:
    t48 = pa.tables(48000)
    assert len(t48.grid) == 102 and t48.freq[t48.grid[-1]] == 20250.0   # Table D.1c
    assert len(pa.tables(44100, 1024).grid) == 130                       # Layer II, D.1e
    t16 = pa.tables(16000)
    assert t16.grid[-1] == 256                     # 16 kHz: the grid runs up to Nyquist
    assert len(t16.centre) == 22                   # Bark 0..21 below 8 kHz
    for t in (t48, t16):
        assert np.all(np.diff(t.grid) > 0) and np.all(np.diff(t.bark) > 0)
        assert np.all(t.band[t.centre] == np.arange(len(t.centre)))
    # Tonal neighbourhoods (Annex D step 4, Layer I): ±2 below bin 63, ±3 below 127, ±6 to 249.
    r = pa.tables(44100).reach
    assert (r[2], r[3], r[62], r[63], r[126], r[127], r[249], r[250]) == (0, 2, 2, 3, 3, 6, 6, 0)


# --------------------------------------------------------------------------- threshold


def test_full_scale_sine_reads_96_db() -> None:
    spl = pa.frame_spl(centred(44100, 20))
    assert spl[20].item() == pytest.approx(96.0, abs=1e-3)
    assert spl[19].item() == pytest.approx(96.0 - 10 * math.log10(4), abs=1e-3)


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
def test_silence_gives_threshold_in_quiet(rate: int) -> None:
    t = pa.tables(rate)
    thr = pa.masking_threshold(torch.zeros(3, 512), rate)
    assert thr.shape == (3, 257)
    np.testing.assert_allclose(thr[1, t.grid].numpy(), t.ath[t.grid], atol=1e-3)
    np.testing.assert_allclose(thr[2].numpy(), np.interp(np.arange(257), t.grid, t.ath[t.grid]),
                               atol=1e-3)


def test_loud_tone_masks_its_neighbourhood_asymmetrically() -> None:
    t = pa.tables(44100)
    k0 = 12                                          # 1033.6 Hz, 8.723 Bark
    thr = pa.masking_threshold(centred(44100, k0), 44100).numpy()
    z0 = t.bark[k0]
    # At the masker: X + av = 97.76 - 1.525 - 0.275 z - 4.5 (the threshold in quiet adds ~0).
    assert thr[k0] == pytest.approx(TONE_DB - 6.025 - 0.275 * z0, abs=0.01)
    assert thr[k0] > t.ath[k0] + 80
    # Bin 17 (dz = +2.31): vf = -(dz-1)(17 - 0.15 X) - 17.
    dz = t.bark[17] - z0
    assert thr[17] == pytest.approx(TONE_DB - 6.025 - 0.275 * z0
                                    - (dz - 1) * (17 - 0.15 * TONE_DB) - 17, abs=0.05)
    # Falls off with Bark distance on both sides over the spreading range (-3 to +8 Bark)...
    lo, hi = np.searchsorted(t.bark, z0 - 3.0), np.searchsorted(t.bark, z0 + 8.0)
    assert np.all(np.diff(thr[lo:k0 + 1]) > 0) and np.all(np.diff(thr[k0:hi]) < 0)
    below = np.interp(z0 - 2.0, t.bark, thr)
    above = np.interp(z0 + 2.0, t.bark, thr)
    assert above > below + 40                        # far more masking above the tone
    assert above > np.interp(z0 + 2.0, t.bark, t.ath) + 50
    # ... and beyond it only the threshold in quiet is left.
    far = [k for k in t.grid if t.bark[k] > z0 + 8.2 or t.bark[k] < z0 - 3.2]
    np.testing.assert_allclose(thr[far], t.ath[far], atol=0.01)


def test_masking_grows_with_level() -> None:
    loud = pa.masking_threshold(centred(44100, 12, 1.0), 44100).numpy()
    soft = pa.masking_threshold(centred(44100, 12, 0.1), 44100).numpy()
    assert loud[12] - soft[12] == pytest.approx(20.0, abs=0.01)
    # The upper slope flattens with level (17 - 0.15 X dB/Bark): 20 dB more level masks
    # more than 20 dB more at +4 Bark.
    k = int(np.argmin(np.abs(pa.tables(44100).bark - (pa.tables(44100).bark[12] + 4))))
    assert loud[k] - soft[k] > 22.0


@pytest.mark.parametrize("freq", [440.0, 1000.0, 3000.0, 5000.0])
def test_same_tone_same_threshold_at_44k_and_48k(freq: float) -> None:
    a = pa.masking_threshold(sine(44100, freq, 0.5), 44100).numpy()
    b = pa.masking_threshold(sine(48000, freq, 0.5), 48000).numpy()
    assert a.max() == pytest.approx(b.max(), abs=0.5)            # the masking peak
    if freq in (1000.0, 3000.0):                                  # and at the tone's own bin
        assert a[round(freq * 512 / 44100)] == pytest.approx(b[round(freq * 512 / 48000)],
                                                             abs=1.0)


def test_threshold_shapes_devices_and_numpy_path() -> None:
    x = torch.tensor(speech_like(0.2, 16000)[:, 0])
    frames = x[: 6 * 512].reshape(2, 3, 512)
    thr = pa.masking_threshold(frames.requires_grad_(), 16000)
    assert thr.shape == (2, 3, 257) and thr.dtype == torch.float32 and not thr.requires_grad
    assert torch.isfinite(thr).all()
    ref = pa.signal_masking_threshold(x.numpy(), 16000, hop=512)
    assert ref.shape == (7, 257)                                  # 3200 samples, last padded
    np.testing.assert_allclose(ref[:6], thr.reshape(6, 257).numpy(), atol=0.02)


def test_gain_is_referred_back_to_the_input_scale() -> None:
    x = centred(44100, 30, 0.05)
    quiet_view = pa.masking_threshold(x, 44100, gain_db=-20.0)
    scaled = pa.masking_threshold(x * 0.1, 44100)
    torch.testing.assert_close(quiet_view, scaled + 20.0, atol=1e-3, rtol=0)
    per_frame = pa.masking_threshold(torch.stack([x, x]), 44100,
                                     gain_db=torch.tensor([0.0, -20.0]))
    torch.testing.assert_close(per_frame[1], quiet_view, atol=1e-3, rtol=0)


# --------------------------------------------------------------------------- maskers


def test_tone_is_a_tonal_masker() -> None:
    m = pa.find_maskers(centred(44100, 40), 44100)
    tonal = torch.isfinite(m.tonal).nonzero().flatten().tolist()
    assert tonal == [40]
    assert m.tonal[40].item() == pytest.approx(TONE_DB, abs=1e-3)
    # Off-bin tone: still one tonal masker, at the nearest bin, within Hann's scalloping.
    m = pa.find_maskers(sine(16000, 1000.0 + 12.0, 0.5), 16000)
    assert torch.isfinite(m.tonal).nonzero().flatten().tolist() == [32]


def test_white_noise_gives_non_tonal_maskers() -> None:
    """Noise fills every critical band with a non-tonal masker. Annex D's 7-dB test also fires
    on chance peaks of the noise periodogram (2-3 per 512-point frame): such tonal maskers
    must stay few and carry little of the maskers' power."""
    rng = np.random.default_rng(0)
    noise = torch.tensor(0.05 * rng.standard_normal((64, 512)), dtype=torch.float32)
    for rate in (16000, 44100):
        m = pa.find_maskers(noise, rate)
        bands = len(pa.tables(rate).centre)
        assert torch.isfinite(m.nontonal).sum(-1).float().mean() >= bands - 3
        tonal_power = torch.nan_to_num(10 ** (m.tonal / 10)).sum(-1)
        noise_power = (10 ** (m.nontonal / 10)).sum(-1)
        assert torch.isfinite(m.tonal).sum(-1).float().mean() < 5
        assert (tonal_power / (tonal_power + noise_power)).mean() < 0.15
    # A tone over the same noise is what carries the masking power.
    m = pa.find_maskers(noise[0] + centred(44100, 40, 0.5), 44100)
    assert m.tonal[40] == m.tonal.max() and m.tonal[40] > m.nontonal.max() + 10


def test_decimation() -> None:
    # Two tones 2 bins (~0.2 Bark) apart: only the louder survives the 0.5-Bark rule.
    x = centred(44100, 100, 0.5) + centred(44100, 102, 0.2)
    m = pa.find_maskers(x, 44100)
    assert torch.isfinite(m.tonal).nonzero().flatten().tolist() == [100]
    # A tone below the threshold in quiet (17 kHz, ATH 68 dB) is no masker at all.
    m = pa.find_maskers(centred(44100, 200, 10 ** (-40 / 20)), 44100)
    assert not torch.isfinite(m.tonal).any() and not torch.isfinite(m.nontonal).any()


# --------------------------------------------------------------------------- losses


def _frames(seconds: float = 0.5) -> torch.Tensor:
    x = speech_like(seconds, 16000)[:, 0]
    x = x / np.sqrt(np.mean(x ** 2))                 # RMS 1, as the training sampler delivers
    n = (x.shape[0] - 512) // 480 + 1
    return torch.tensor(np.stack([x[i * 480: i * 480 + 512] for i in range(n)]))


def test_losses_zero_for_identical_and_grow_with_noise() -> None:
    ref = _frames()
    mask = pa.masking_threshold(ref, 16000)
    assert priority_weighted_loss(ref, ref, mask).item() == 0.0
    assert noise_to_mask_loss(ref, ref, mask).item() == 0.0
    assert noise_to_mask_loss(ref, ref, mask, log_ratio=True).item() == 0.0
    rng = np.random.default_rng(1)
    white = torch.tensor(rng.standard_normal(ref.shape), dtype=torch.float32)
    values = []
    for snr in (50, 30, 20, 10):
        rec = ref + white * 10 ** (-snr / 20)
        values.append([priority_weighted_loss(rec, ref, mask).item(),
                       noise_to_mask_loss(rec, ref, mask).item(),
                       noise_to_mask_loss(rec, ref, mask, log_ratio=True).item()])
    values = np.array(values)
    assert np.all(np.diff(values, axis=0) > 0)
    assert values[0, 1] < 1e-3                       # 50 dB SNR: the noise is masked


def test_masked_noise_costs_less_than_unmasked_noise() -> None:
    ref = centred(44100, 40, 0.5).repeat(2, 1)        # loud 3.4 kHz tone, 91.8 dB
    mask = pa.masking_threshold(ref, 44100)
    # Equal-power disturbances (56 dB): one bin above the tone, under its masking, or at
    # 860 Hz, 8.8 Bark below it, where only the threshold in quiet (3.9 dB) protects.
    near = ref + centred(44100, 41, 0.01)
    far = ref + centred(44100, 10, 0.01)
    assert noise_to_mask_loss(near, ref, mask).item() == 0.0
    assert noise_to_mask_loss(far, ref, mask).item() > 1e4
    assert (noise_to_mask_loss(near, ref, mask, log_ratio=True)
            < noise_to_mask_loss(far, ref, mask, log_ratio=True))


def test_priority_weight_ignores_masked_components() -> None:
    """Dropping a component of the reference costs little where it is masked (13.8 kHz, under
    the tone's upper slope and the threshold in quiet) and a lot where it is audible (860 Hz)."""
    tone = centred(44100, 40, 0.5)
    costs = []
    for k in (160, 10):
        ref = tone + centred(44100, k, 10 ** (-75 / 20))      # 21 dB component
        costs.append(priority_weighted_loss(tone, ref, pa.masking_threshold(ref, 44100)).item())
    assert costs[0] < 0.1 * costs[1]


def test_loss_gradients_flow() -> None:
    ref = _frames(0.3)
    mask = pa.masking_threshold(ref, 16000)
    rec = (ref + 0.1 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(0)))
    rec.requires_grad_()
    total = (priority_weighted_loss(rec, ref, mask) + noise_to_mask_loss(rec, ref, mask)
             + noise_to_mask_loss(rec, ref, mask, log_ratio=True))
    total.backward()
    assert rec.grad is not None and torch.isfinite(rec.grad).all() and rec.grad.abs().sum() > 0
    # Also finite where the reconstruction is silent (the log floor below the mask).
    silent = torch.zeros_like(ref, requires_grad=True)
    priority_weighted_loss(silent + 0.0, ref, mask).backward()
    assert torch.isfinite(silent.grad).all()
