"""The training objective: named distortion terms and a weight per term.

A term is a function of the decoded signal and its reference (``Pair``) returning a scalar;
``distortion`` sums the weighted terms that have a non-zero weight. A new loss is one function
here, one entry in ``TERMS`` and a weight (a preset in ``PRESETS`` or ``--loss-weight``); the
weights a run used are recorded in its tier JSON.

Both signals are gain-normalised packets (B, span) in the domain the decoder outputs (after
LPC synthesis for LPC tiers), so every term sees what a listener hears.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..codec.lpc import lpc_analysis
from . import psychoacoustic
from .disturbance import pesq_disturbance
from .losses import (
    WEIGHTING_FFT,
    asymmetric_log_mel,
    mel_distance,
    noise_to_mask_loss,
    priority_weighted_loss,
    segmental_mse,
    time_mse,
    weighted_spectral_error,
    weighting_response,
)

PSY_FFT = 512     # psychoacoustic model frame (MPEG-1 model 1's FFT size)
# CELP perceptual weighting W(z) = A(z/γ1)/A(z/γ2) of the reference's own LPC (G.729: 0.94 and
# 0.6; AMR-WB's A(z/0.92) with a 0.68 de-emphasis): the noise follows the formants partly.
GAMMA1, GAMMA2 = 0.92, 0.68


@dataclass
class Reference:
    """A batch's reference packets, with what terms derive from them computed once."""

    signal: torch.Tensor              # (B, span), gain-normalised
    sample_rate: int
    gain: torch.Tensor | None = None  # (B, 1) the packets' quantized gains (playback level)

    @functools.cached_property
    def frames(self) -> torch.Tensor:
        """Half-overlapping PSY_FFT frames (B, n, PSY_FFT) of the reference."""
        return self.signal.unfold(1, PSY_FFT, PSY_FFT // 2)

    @functools.cached_property
    def mask_db(self) -> torch.Tensor:
        """MPEG-1 model-1 masking threshold of every frame, at the packet's real level."""
        if self.gain is None:
            raise ValueError("the psychoacoustic terms need the packets' gains")
        gain_db = (20.0 * torch.log10(self.gain.to(self.signal.device))).expand(
            self.frames.shape[:2])
        return psychoacoustic.masking_threshold(self.frames, self.sample_rate, gain_db=gain_db)

    @functools.cached_property
    def weighting(self) -> torch.Tensor:
        """|W|² (B, frames, bins) of each half-overlapping WEIGHTING_FFT frame, from the
        reference frame's own LPC (no gradient: it describes the target)."""
        frames = self.signal.detach().unfold(1, WEIGHTING_FFT, WEIGHTING_FFT // 2)
        b, n, _ = frames.shape
        a = lpc_analysis(frames.reshape(b * n, -1).cpu().numpy(), self.sample_rate)
        w2 = weighting_response(a, GAMMA1, GAMMA2).astype(np.float32)
        return torch.from_numpy(w2.reshape(b, n, -1)).to(self.signal.device)


@dataclass
class Pair:
    """A decoded batch and its reference."""

    rec: torch.Tensor                 # (B, span)
    ref: Reference

    @property
    def rec_frames(self) -> torch.Tensor:
        return self.rec.unfold(1, PSY_FFT, PSY_FFT // 2)


def _time(p: Pair) -> torch.Tensor:
    return time_mse(p.rec, p.ref.signal)


def _mel(p: Pair) -> torch.Tensor:
    return mel_distance(p.rec, p.ref.signal, p.ref.sample_rate)


def _priority_weighted(p: Pair) -> torch.Tensor:
    return priority_weighted_loss(p.rec_frames, p.ref.frames, p.ref.mask_db)


def _noise_to_mask(p: Pair) -> torch.Tensor:
    return noise_to_mask_loss(p.rec_frames, p.ref.frames, p.ref.mask_db, log_ratio=True)


def _asymmetric(p: Pair) -> torch.Tensor:
    return asymmetric_log_mel(p.rec, p.ref.signal, p.ref.sample_rate)


def _segmental(p: Pair) -> torch.Tensor:
    return segmental_mse(p.rec, p.ref.signal)


def _disturbance(p: Pair) -> torch.Tensor:
    return pesq_disturbance(p.rec, p.ref.signal, p.ref.sample_rate)


def _weighted(p: Pair) -> torch.Tensor:
    return weighted_spectral_error(p.rec, p.ref.signal, p.ref.weighting)


#: term name -> (function, what it measures)
TERMS: dict[str, tuple[Callable[[Pair], torch.Tensor], str]] = {
    "time": (_time, "waveform MSE relative to the reference power (~1/SNR)"),
    "mel": (_mel, "multi-resolution log-mel L1 distance"),
    "pw": (_priority_weighted, "SPL'20 priority-weighted log-spectral error, per dB²"),
    "nmr": (_noise_to_mask, "noise above the MPEG-1 masking threshold, dB"),
    "asym": (_asymmetric, "log-mel distance, added energy 4x the cost of missing energy"),
    "segtime": (_segmental, "waveform error over signal power per 16 ms frame (segmental)"),
    "pesqd": (_disturbance, "PESQ-style loudness disturbance, symmetric + asymmetric"),
    "wspec": (_weighted, "CELP perceptually weighted error, A(z/0.92)/A(z/0.68) of the ref"),
}

#: ``--loss`` presets: term -> weight
PRESETS: dict[str, dict[str, float]] = {
    "plain": {"time": 1.0, "mel": 0.1},
    "psychoacoustic": {"time": 1.0, "mel": 0.1, "pw": 0.02, "nmr": 0.1},
}


def weights_for(preset: str, overrides: dict[str, float] | None = None) -> dict[str, float]:
    """A preset's weights updated by ``overrides``; unknown terms raise KeyError."""
    weights = dict(PRESETS[preset])
    for name, w in (overrides or {}).items():
        if name not in TERMS:
            raise KeyError(f"unknown loss term {name!r}; known: {', '.join(TERMS)}")
        weights[name] = float(w)
    return weights


def distortion(pair: Pair, weights: dict[str, float]) -> torch.Tensor:
    """Σ weight · term over the terms with a non-zero weight, in ``weights``' order."""
    total = pair.rec.new_zeros(())
    for name, w in weights.items():
        if w:
            total = total + w * TERMS[name][0](pair)
    return total
