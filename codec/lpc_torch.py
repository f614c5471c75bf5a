"""The LPC module's trainable and differentiable parts (torch): the LSF quantizer and the
training loss's synthesis. The coding path's DSP (analysis, filters, LSF conversions) is in
``lpc.py``, which has no torch; its names below stay reachable as ``lpc.NAME``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .lpc import LSF_GAP, ORDER, PREEMPH, _lsf_poly, stabilize
from .quantize import NoiseQuantizer


def lsf_to_lpc_torch(lsf: torch.Tensor) -> torch.Tensor:
    """Differentiable ``lsf_to_lpc`` for training."""
    from torch.nn import functional as F

    return _lsf_poly(lsf, torch.cos, lsf.new_ones(lsf.shape[:-1] + (1,)), F.pad)


def stabilize_torch(lsf: torch.Tensor, gap: float = LSF_GAP) -> torch.Tensor:
    """``stabilize`` in torch (identity gradient where no constraint binds)."""
    x = torch.sort(lsf, dim=-1).values
    cols = [torch.clamp(x[..., 0], min=gap)]
    for i in range(1, x.shape[-1]):
        cols.append(torch.maximum(x[..., i], cols[-1] + gap))
    cols[-1] = torch.clamp(cols[-1], max=math.pi - gap)
    for i in range(x.shape[-1] - 2, -1, -1):
        cols[i] = torch.minimum(cols[i], cols[i + 1] - gap)
    return torch.stack(cols, dim=-1)


def residual_torch(x_ext: torch.Tensor, sets: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Batched differentiable ``residual``: x_ext (B, ORDER+n), sets (B, S, 17), idx (n,)."""
    p = sets.shape[-1] - 1
    win = x_ext.unfold(-1, p + 1, 1).flip(-1)            # (B, n, 17)
    return (win * sets[:, idx, :]).sum(-1)


SYNTH_IR = 512  # samples of 1/Â(z) kept by the training loss's synthesis (poles decay long before)


def synthesis_responses(a: torch.Tensor, length: int = SYNTH_IR) -> torch.Tensor:
    """Impulse responses (..., length) of the decoder's synthesis path 1/Â(z) then de-emphasis,
    one per coefficient set ``a`` (..., ORDER+1); differentiable in ``a`` (and so in the LSFs).

    Computed by frequency sampling at 4·length points: the stabilized filters' responses decay
    far below the aliasing level within ``length`` samples."""
    n_fft = 4 * length
    den = torch.fft.rfft(a, n_fft) * torch.fft.rfft(a.new_tensor([1.0, -PREEMPH]), n_fft)
    return torch.fft.irfft(1.0 / den, n_fft)[..., :length]


def synthesize_torch(e: torch.Tensor, h: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Differentiable time-varying synthesis from zero state, for the training loss.

    ``e`` (B, n) excitation, ``h`` (B, S, L) responses of ``synthesis_responses``, ``idx`` (n,)
    the set per sample (``set_index``: non-decreasing, so each set owns one run of samples).
    Sample t excites its own set's response; the decoder's recursion instead switches the
    filter under a running state, so the two differ only in the short transients at set
    switches, which is close enough for a loss and keeps the graph one FFT convolution deep
    instead of n sequential steps.

    Each set's run (about a hop long) is convolved on its own with a short FFT and the
    results overlap-added: the same sum as convolving S full-length masked copies of ``e``,
    at a fraction of the cost (this was half of an LPC training step)."""
    b, n = e.shape
    s, length = h.shape[1], h.shape[2]
    counts = torch.bincount(idx, minlength=s)
    starts = torch.cumsum(counts, 0) - counts                         # (S,)
    run = int(counts.max())
    j = torch.arange(run, device=e.device)
    valid = (j[None, :] < counts[:, None]).to(e.dtype)                # (S, run)
    pos = (starts[:, None] + j[None, :]).clamp_max(n - 1)             # (S, run)
    blocks = e[:, pos] * valid                                        # (B, S, run)
    span = run + length - 1
    n_fft = 1 << (span - 1).bit_length()
    y = torch.fft.irfft(torch.fft.rfft(blocks, n_fft) * torch.fft.rfft(h, n_fft), n_fft)
    out_pos = (starts[:, None] + torch.arange(span, device=e.device)[None, :]).reshape(-1)
    out = e.new_zeros(b, n + span).index_add(1, out_pos, y[..., :span].reshape(b, -1))
    return out[:, :n]


def log_spectral_distortion(a_ref: torch.Tensor, a_q: torch.Tensor, n_fft: int = 256
                            ) -> torch.Tensor:
    """Mean squared log-spectral distance (dB²) between LPC envelopes 1/A (batched)."""
    ref = torch.fft.rfft(a_ref, n_fft).abs().clamp_min(1e-6)
    q = torch.fft.rfft(a_q, n_fft).abs().clamp_min(1e-6)
    return (20.0 * torch.log10(ref / q)).pow(2).mean()


class LSFQuantizer(nn.Module):
    """Trainable LSF quantizer: learned per-LSF step and Laplace entropy model, mean removed."""

    def __init__(self, order: int = ORDER, half: int = 63, step: float = 0.02) -> None:
        super().__init__()
        self.order = order
        self.register_buffer("mean", torch.linspace(1, order, order, dtype=torch.float32)
                             * math.pi / (order + 1))
        self.log_step = nn.Parameter(torch.full((order,), math.log(step)))
        self.q = NoiseQuantizer(order, half)
        self.mean: torch.Tensor  # a buffer (registered above)

    @property
    def n_symbols(self) -> int:
        return self.q.n_symbols

    def _latent(self, lsf: torch.Tensor) -> torch.Tensor:
        return ((lsf - self.mean) / torch.exp(self.log_step))[..., None]

    def forward(self, lsf: torch.Tensor, quantize: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, order) LSFs → (stabilized dequantized LSFs, bits per LSF symbol)."""
        v, bits, _ = self.q(self._latent(lsf), quantize)
        out = self.mean + torch.exp(self.log_step) * v[..., 0]
        return stabilize_torch(out), bits

    def hard_bits(self, lsf: torch.Tensor) -> torch.Tensor:
        return self.q.hard_bits(self._latent(lsf))

    def to_symbols(self, lsf: np.ndarray) -> np.ndarray:
        """(N, order) LSFs → (N, order, 1) integer symbols."""
        with torch.no_grad():
            v = self._latent(torch.from_numpy(np.asarray(lsf, np.float32))).numpy()
        return self.q.to_symbols(v)

    def from_symbols(self, s: np.ndarray) -> np.ndarray:
        """(N, order, 1) symbols → (N, order) stabilized LSFs (float64)."""
        step = np.exp(self.log_step.detach().cpu().numpy().astype(np.float64))
        mean = self.mean.cpu().numpy().astype(np.float64)
        return stabilize(mean + step * self.q.from_symbols(s)[..., 0].astype(np.float64))
