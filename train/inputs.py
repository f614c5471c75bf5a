"""Training batches as the coder sees them, one builder per front end.

Plain tiers code the gain-normalised packet. LPC tiers code the LPC residual of the
pre-processed packet under the quantized filters, computed inside the graph so the gradient
reaches the LSF quantizer; their error is then measured after the synthesis filter and
de-emphasis (``lpc_torch.synthesize_torch``), in the signal the decoder outputs (prior-art §C–D).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..codec import lpc, lpc_torch
from ..codec.cascade import Cascade
from ..codec.framing import Framing, split_frames
from ..codec.gain import gain_code, gain_value
from .objective import Reference

LPC_WARM = 1024   # pre-filter warm-up samples before a training packet (high-pass transient)


@dataclass
class LPCParts:
    """What an LPC batch adds: the LSF rate and distortion, and the synthesis path."""

    lsf: torch.Tensor        # (B·(P+1), ORDER) reference LSFs
    lsf_bits: torch.Tensor   # differentiable LSF bits per LSF
    lsd: torch.Tensor        # log-spectral distortion of the quantized filters, dB²
    idx: torch.Tensor        # which filter set each residual sample belongs to
    synth: torch.Tensor      # truncated impulse responses of the quantized filters
    ratio: torch.Tensor      # (B, 1) residual gain / signal gain


@dataclass
class Batch:
    """One step's packets: ``x`` is what the stages code, ``ref`` what the decoder outputs."""

    x: torch.Tensor                # (B, span) normalised packets (residual for LPC)
    ref: Reference
    lpc: LPCParts | None = None

    def decoded(self, rec: torch.Tensor) -> torch.Tensor:
        """The decoder's output for the stages' reconstruction ``rec`` of ``x``: itself, or
        for LPC the reference plus the residual error through the synthesis filter."""
        if self.lpc is None:
            return rec
        err = lpc_torch.synthesize_torch(rec - self.x, self.lpc.synth, self.lpc.idx)
        return self.ref.signal + err * self.lpc.ratio


def row_gains(rows: np.ndarray) -> np.ndarray:
    """The encoder's quantized gain of each row (packet), as float32."""
    return np.array([gain_value(gain_code(row)) for row in rows], np.float32)


def plain_batch(raw: np.ndarray, framing: Framing, sample_rate: int,
                device: torch.device, codes: np.ndarray | None = None) -> Batch:
    """Raw segments (B, ≥span) → the last span of each, normalised by its quantized gain, or
    by the gain ``codes`` given (a stereo S normalised by its M's)."""
    seg = raw[:, -framing.packet_span(framing.packet_frames):]
    g = (row_gains(seg) if codes is None else
         np.array([gain_value(int(c)) for c in codes], np.float32))[:, None]
    x = torch.from_numpy(seg / g).to(device)
    return Batch(x, Reference(x, sample_rate, torch.from_numpy(g)))


def lpc_batch(model: Cascade, raw: np.ndarray, framing: Framing, sample_rate: int,
              quantize: bool, device: torch.device) -> Batch:
    """Raw segments (B, LPC_WARM + span) → residual packets under the quantized filters."""
    assert model.lsf is not None
    f = framing
    span = f.packet_span(f.packet_frames)
    # One high-pass pass: the decoder's target as it is, and pre-emphasised for the analysis
    # (the same samples lpc.preprocess gives, without filtering the batch twice).
    hp = lpc.highpass(raw)
    xp = hp.copy()
    xp[:, 1:] -= lpc.PREEMPH * hp[:, :-1]
    x = xp[:, LPC_WARM:]
    b, p = x.shape[0], f.packet_frames
    # Frame -1 (the previous packet's last frame) supplies the set of the leading overlap.
    prev = xp[:, LPC_WARM - f.hop: LPC_WARM - f.hop + f.frame][:, None]
    frames = np.concatenate([prev, split_frames(x, f, p)], axis=1).reshape(-1, f.frame)
    a_ref = lpc.lpc_analysis(frames, sample_rate)
    lsf = torch.from_numpy(lpc.lpc_to_lsf(a_ref).astype(np.float32)).to(device)
    lsf_hat, bits = model.lsf(lsf, quantize)
    aq = lpc_torch.lsf_to_lpc_torch(lsf_hat)
    a_ref_t = torch.from_numpy(a_ref.astype(np.float32)).to(device)
    lsd = lpc_torch.log_spectral_distortion(a_ref_t, aq)
    idx = torch.from_numpy(lpc.set_index(span, f.hop, f.overlap, p)).to(device)
    x_ext = torch.from_numpy(xp[:, LPC_WARM - lpc.ORDER:].astype(np.float32)).to(device)
    sets = aq.reshape(b, p + 1, -1)
    r = lpc_torch.residual_torch(x_ext, sets, idx)
    g = row_gains(r.detach().cpu().numpy())
    r = r / torch.from_numpy(g)[:, None].to(device)
    # What the decoder reproduces (the high-passed input), normalised by its own gain.
    sig = hp[:, LPC_WARM:]
    g_sig = row_gains(sig)
    ref = Reference(torch.from_numpy((sig / g_sig[:, None]).astype(np.float32)).to(device),
                    sample_rate, torch.from_numpy(g_sig)[:, None])
    parts = LPCParts(lsf=lsf, lsf_bits=bits, lsd=lsd, idx=idx,
                     synth=lpc_torch.synthesis_responses(sets),
                     ratio=torch.from_numpy(g / g_sig)[:, None].to(device))
    return Batch(r, ref, parts)


def make_batch(model: Cascade, raw: np.ndarray, framing: Framing, sample_rate: int,
               quantize: bool = True, device: torch.device | None = None,
               codes: np.ndarray | None = None) -> Batch:
    """The batch of ``model``'s front end for raw segments (B, LPC_WARM + span); ``codes``:
    the gain codes plain packets are normalised by (default: each row's own). LPC tiers
    always use their own (they code stereo as L/R)."""
    device = device or next(model.parameters()).device
    if model.lsf is None:
        return plain_batch(raw, framing, sample_rate, device, codes)
    return lpc_batch(model, raw, framing, sample_rate, quantize, device)
