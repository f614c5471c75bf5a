"""Training losses: time-domain error, multi-resolution log-mel distance (prior-art §C) and the
SPL'20 psychoacoustic terms: priority-weighted spectral error and noise-to-mask ratio (§E.2)."""

from __future__ import annotations

import functools

import numpy as np
import torch

from .psychoacoustic import spectrum_power


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


@functools.lru_cache(maxsize=32)
def mel_matrix(n_fft: int, n_mels: int, sample_rate: int) -> torch.Tensor:
    """Triangular mel filterbank (n_fft//2+1, n_mels) over 0..sr/2 (HTK mel scale)."""
    bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(0.0, _hz_to_mel(np.array(sample_rate / 2)), n_mels + 2))
    m = np.zeros((bins.shape[0], n_mels), dtype=np.float32)
    for i in range(n_mels):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        up = (bins - lo) / max(mid - lo, 1e-9)
        down = (hi - bins) / max(hi - mid, 1e-9)
        m[:, i] = np.clip(np.minimum(up, down), 0.0, None)
    # Narrow low bands can fall between bins: give each band at least its nearest bin.
    for i in range(n_mels):
        if m[:, i].sum() == 0:
            m[np.argmin(np.abs(bins - edges[i + 1])), i] = 1.0
    return torch.from_numpy(m)


# (n_fft, n_mels) pairs: short windows for transients, long ones for harmonics.
RESOLUTIONS = ((256, 32), (512, 64), (1024, 128))


def log_mel(x: torch.Tensor, n_fft: int, n_mels: int, sample_rate: int) -> torch.Tensor:
    win = torch.hann_window(n_fft, device=x.device)
    spec = torch.stft(x, n_fft, hop_length=n_fft // 4, window=win, return_complex=True)
    power = spec.real.pow(2) + spec.imag.pow(2)
    mel = torch.einsum("bft,fm->bmt", power, mel_matrix(n_fft, n_mels, sample_rate).to(x.device))
    return torch.log(mel + 1e-5)


def mel_distance(x: torch.Tensor, y: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Mean L1 distance of log-mel spectra over several resolutions."""
    total = x.new_zeros(())
    for n_fft, n_mels in RESOLUTIONS:
        total = total + (log_mel(x, n_fft, n_mels, sample_rate)
                         - log_mel(y, n_fft, n_mels, sample_rate)).abs().mean()
    return total / len(RESOLUTIONS)


def time_mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MSE relative to the reference power (signals are gain-normalised, so this is ~1/SNR)."""
    return (x - y).pow(2).mean() / (y.pow(2).mean() + 1e-8)


# --------------------------------------------------------------------------- psychoacoustic
# SPL'20 loss terms (prior-art §E.2). Both take frames (..., N) of the reconstruction and the
# clean reference plus the reference's masking threshold ``mask_db`` (..., N//2+1) in dB SPL from
# ``psychoacoustic.masking_threshold(ref, sample_rate)``, computed once per batch without grad.
# Deviation from the SPL'20 code, as prior-art §E.2 recommends: every spectrum here is the
# Hann-windowed, 96-dB-calibrated ``spectrum_power`` the threshold itself was computed from, so
# signal, noise and mask share one dB scale (the original code used an unwindowed, unshifted
# spectrum against a 96-dB-shifted mask).

# Levels are compared down to this far below the mask only: below it everything is equally
# inaudible, and the floor bounds the log's gradient where the reconstruction has no energy.
_BELOW_MASK_DB = 30.0


def priority_weighted_loss(rec: torch.Tensor, ref: torch.Tensor,
                           mask_db: torch.Tensor) -> torch.Tensor:
    """Priority-weighted log-spectral error: ``mean w(f) (P_ref(f) - P_rec(f))²`` in dB².

    ``w = log10(1 + P_ref / M)`` is large where the reference stands far above its masking
    threshold ``M`` and ~0 where it is masked anyway (SPL'20 ``smr_loss``).
    """
    mask = 10.0 ** (mask_db.detach() / 10.0)
    p_ref = spectrum_power(ref.detach())
    weight = torch.log10(1.0 + p_ref / mask)
    floor = mask * 10.0 ** (-_BELOW_MASK_DB / 10.0)
    diff = 10.0 * torch.log10(p_ref + floor) - 10.0 * torch.log10(spectrum_power(rec) + floor)
    return (weight * diff.square()).mean()


def noise_to_mask_loss(rec: torch.Tensor, ref: torch.Tensor, mask_db: torch.Tensor, *,
                       log_ratio: bool = False) -> torch.Tensor:
    """Penalty on coding noise ``rec - ref`` above the masking threshold (SPL'20 ``nmr_max_mean``).

    Default, as implemented in SPL'20: per frame the worst bin's ``relu(P_noise / M - 1)``,
    averaged over frames; zero when all noise is masked. Its linear ratio is unbounded (noise
    30 dB above the mask costs 999), so ``log_ratio=True`` offers a gentler variant, not in
    the paper: the mean over bins and frames of ``relu(10 log10(P_noise / M))`` (dB above mask).
    """
    ratio = spectrum_power(rec - ref.detach()) / 10.0 ** (mask_db.detach() / 10.0)
    if log_ratio:
        # The clamp keeps log finite at zero noise; its gradient there is 0 and relu's too.
        return torch.relu(10.0 * torch.log10(ratio.clamp_min(1e-12))).mean()
    return torch.relu(ratio - 1.0).amax(dim=-1).mean()


# --------------------------------------------------------------------------- perceptual
# Terms of the objective study (issue: "where the quality goes"): PESQ's disturbance model
# punishes energy the codec *adds* in weak bands and spectral valleys far more than energy it
# leaves out, and quiet frames count in it as much as loud ones; a waveform MSE ignores both.


def asymmetric_log_mel(x: torch.Tensor, y: torch.Tensor, sample_rate: int,
                       added: float = 4.0) -> torch.Tensor:
    """Multi-resolution log-mel distance of decoded ``x`` to reference ``y`` in which energy
    added (``x`` above ``y``) costs ``added`` times as much as energy missing, per cell."""
    total = x.new_zeros(())
    for n_fft, n_mels in RESOLUTIONS:
        d = log_mel(x, n_fft, n_mels, sample_rate) - log_mel(y, n_fft, n_mels, sample_rate)
        total = total + (added * torch.relu(d) + torch.relu(-d)).mean()
    return total / len(RESOLUTIONS)


def segmental_mse(x: torch.Tensor, y: torch.Tensor, frame: int = 256,
                  floor: float = 1e-3) -> torch.Tensor:
    """Error power over reference power per ``frame``-sample frame, averaged over frames, so
    a quiet frame counts as much as a loud one; frames below ``floor`` × the packet's mean
    power are held at that floor (silence must not dominate)."""
    e = (x - y).unfold(-1, frame, frame).pow(2).mean(-1)
    p = y.unfold(-1, frame, frame).pow(2).mean(-1)
    p = torch.maximum(p, floor * p.mean(-1, keepdim=True) + 1e-10)
    return (e / p).mean()


WEIGHTING_FFT = 512


def weighting_response(a: np.ndarray, gamma1: float, gamma2: float,
                       n_fft: int = WEIGHTING_FFT) -> np.ndarray:
    """|W(e^jω)|² of the CELP perceptual weighting filter W(z) = A(z/γ1) / A(z/γ2) for LPC
    polynomials ``a`` (N, order+1): (N, n_fft//2+1). The coding noise is shaped like
    1/|W|², i.e. it follows the formants only partly (γ1 > γ2)."""
    k = np.arange(a.shape[1])
    num = np.abs(np.fft.rfft(a * gamma1 ** k, n_fft)) ** 2
    den = np.abs(np.fft.rfft(a * gamma2 ** k, n_fft)) ** 2
    return num / np.maximum(den, 1e-12)


def weighted_spectral_error(x: torch.Tensor, y: torch.Tensor, w2: torch.Tensor,
                            n_fft: int = WEIGHTING_FFT) -> torch.Tensor:
    """Perceptually weighted error power over weighted reference power, per frame, averaged:
    Σ_f |W|²|X−Y|² / Σ_f |W|²|Y|² on Hann frames (hop n_fft/2), ``w2`` (B, frames, bins)
    from ``weighting_response`` of the reference's own LPC."""
    win = torch.hann_window(n_fft, device=x.device)
    ex = torch.stft(x - y, n_fft, hop_length=n_fft // 2, window=win, center=False,
                    return_complex=True)
    ry = torch.stft(y, n_fft, hop_length=n_fft // 2, window=win, center=False,
                    return_complex=True)
    w2 = w2.transpose(1, 2)  # (B, bins, frames) as stft gives
    num = (w2 * (ex.real.pow(2) + ex.imag.pow(2))).sum(1)
    den = (w2 * (ry.real.pow(2) + ry.imag.pow(2))).sum(1)
    den = torch.maximum(den, 1e-3 * den.mean(-1, keepdim=True) + 1e-10)
    return (num / den).mean()
