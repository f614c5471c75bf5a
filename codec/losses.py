"""Training losses: time-domain error and multi-resolution log-mel distance (prior-art §C)."""

from __future__ import annotations

import functools

import numpy as np
import torch


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
