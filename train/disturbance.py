"""A differentiable stand-in for PESQ's disturbance model (ITU-T P.862 §10.2, after PMSQE,
Martín-Doñas et al. 2018): the objective that scores speech codecs, made a training loss.

Per 32 ms frame both signals go to a Bark-like band power spectrum, then to Zwicker loudness
(power law 0.23 above an absolute threshold). The loudness difference, less a dead zone of a
quarter of the smaller loudness (what PESQ treats as masked), is the *symmetric* disturbance;
weighted by the asymmetry factor ((P_dec + c) / (P_ref + c))^1.2, zero below 3 and capped at
12, it is the *asymmetric* one: energy the codec adds costs, energy it leaves out barely does.
Frames are summed as PESQ does (L2 over bands for the symmetric part, L1 for the asymmetric),
and the two are combined with PESQ's own weights (0.1 and 0.0309).

Levels are relative to the packet's mean reference band power (packets are gain-normalised),
so the absolute threshold sits ``THRESHOLD_DB`` below speech at its average level.
"""

from __future__ import annotations

import functools

import torch

from .losses import mel_matrix

N_FFT = 512            # 32 ms at 16 kHz, PESQ's frame
N_BANDS = 42           # Bark-like bands (PESQ-WB uses 49 over 0-8 kHz)
ZWICKER = 0.23         # loudness power law
THRESHOLD_DB = -60.0   # absolute hearing threshold below the mean band level
ASYM_OFFSET_DB = -40.0  # PESQ's "+50" in the asymmetry ratio, relative to the mean band level
SYM_WEIGHT, ASYM_WEIGHT = 0.1, 0.0309   # PESQ's MOS = 4.5 - 0.1 D - 0.0309 A


@functools.lru_cache(maxsize=8)
def _bands(sample_rate: int) -> torch.Tensor:
    return mel_matrix(N_FFT, N_BANDS, sample_rate)


def band_power(x: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Band power (B, frames, bands) of half-overlapping Hann frames of ``x`` (B, span)."""
    win = torch.hann_window(N_FFT, device=x.device)
    spec = torch.stft(x, N_FFT, hop_length=N_FFT // 2, window=win, center=False,
                      return_complex=True)
    power = spec.real.pow(2) + spec.imag.pow(2)          # (B, bins, frames)
    return torch.einsum("bft,fm->btm", power, _bands(sample_rate).to(x.device))


def loudness(p: torch.Tensor, threshold: float) -> torch.Tensor:
    """Zwicker loudness of band powers ``p`` with absolute threshold ``threshold``, 0 below
    it (as in PESQ), normalised to 1 at the mean level (p = 1)."""
    def raw(q: torch.Tensor | float) -> torch.Tensor:
        return torch.as_tensor((0.5 + 0.5 * q / threshold) ** ZWICKER - 1.0)
    return torch.relu(raw(p)) / raw(1.0)


def pesq_disturbance(rec: torch.Tensor, ref: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """PESQ-style weighted disturbance of decoded ``rec`` against ``ref`` (B, span): 0 for a
    perfect decode, in PESQ MOS points (about how much the score would drop)."""
    py = band_power(ref.detach(), sample_rate)
    level = py.mean(dim=(1, 2), keepdim=True) + 1e-10    # the packet's mean band power
    py = py / level
    px = band_power(rec, sample_rate) / level
    thr = 10.0 ** (THRESHOLD_DB / 10.0)
    lx, ly = loudness(px, thr), loudness(py, thr)
    d = lx - ly
    dead = 0.25 * torch.minimum(lx, ly).detach()
    sym = torch.relu(d.abs() - dead)
    c = 10.0 ** (ASYM_OFFSET_DB / 10.0)
    h = ((px + c) / (py + c)).pow(1.2)
    h = torch.where(h < 3.0, torch.zeros_like(h), h.clamp(max=12.0))
    frame_sym = (sym.pow(2).mean(-1) + 1e-12).sqrt()     # L2 over bands
    frame_asym = (sym * h).mean(-1)                      # L1 over bands
    # L2 over time (PESQ: L6 over 320 ms, then L2), so bad frames weigh more than a mean.
    total_sym = (frame_sym.pow(2).mean(-1) + 1e-12).sqrt()
    total_asym = (frame_asym.pow(2).mean(-1) + 1e-12).sqrt()
    return (SYM_WEIGHT * total_sym + ASYM_WEIGHT * total_asym).mean()
