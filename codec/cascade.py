"""CMRL: a cascade of NWC stages, optionally behind the LPC module (prior-art §C–D).

Stage 0 codes the (gain-normalised) frames; stage k codes what stages 0..k−1 missed, scaled by
``res_scale`` so every stage sees inputs of similar size, and the decoder sums the stages'
outputs. With ``lpc`` the frames are the LPC residual (``lpc.py``) and the LSF symbols travel
in the base layer. Each stage is one layer of the bitstream: decoding the first k layers gives
the signal of a k-stage codec, and because the encoder runs the decoders it depends on (closed
loop), a stream cut to k layers carries exactly the codes a k-layer encode would have written.

This module works on frames and symbols only; framing, gains and the range coder live in
``payload.py`` and ``entropy.py``.
"""

from __future__ import annotations

from typing import NamedTuple, cast

import numpy as np
import torch
from torch import nn

from . import infer
from .config import CascadeConfig  # noqa: F401 - re-exported (torch-free)
from .lpc_torch import LSFQuantizer
from .model import NWC


class StageOutput(NamedTuple):
    """One training pass: reconstruction after each stage, rate and latents per stage.

    A NamedTuple, so DistributedDataParallel can find the tensors in it."""

    recs: list[torch.Tensor]
    bits: list[torch.Tensor]
    latents: list[torch.Tensor]
    penalty: torch.Tensor


class Cascade(nn.Module):
    """The codec network: optional LSF quantizer plus ``stages`` NWC modules."""

    def __init__(self, cfg: CascadeConfig) -> None:
        super().__init__()
        if cfg.stages < 1:
            raise ValueError("a cascade needs at least one stage")
        self.cfg = cfg
        self.lsf = LSFQuantizer(half=cfg.lsf_levels // 2) if cfg.lpc else None
        self.stages = nn.ModuleList(NWC(cfg.nwc) for _ in range(cfg.stages))

    @property
    def nwc_stages(self) -> list[NWC]:
        """The stages, typed (a ModuleList holds plain Modules as far as a checker knows)."""
        return [cast(NWC, s) for s in self.stages]

    @property
    def code_steps(self) -> int:
        return self.nwc_stages[0].code_steps

    @property
    def symbol_channels(self) -> int:
        return self.nwc_stages[0].symbol_channels

    def scale(self, k: int) -> float:
        return 1.0 if k == 0 else self.cfg.res_scale

    def forward(self, frames: torch.Tensor, quantize: bool = True,
                n_stages: int | None = None, fast: bool = False) -> StageOutput:
        """Training pass over (N, frame) normalised frames; ``fast`` runs each stage through
        ``infer.train_forward``'s kernels (the same function, faster on a CPU)."""
        total = torch.zeros_like(frames)
        out = StageOutput([], [], [], frames.new_zeros(()))
        penalty_sum = frames.new_zeros(())
        for k, stage in enumerate(self.nwc_stages[: n_stages or len(self.stages)]):
            s = self.scale(k)
            x = (frames - total) * s
            rec, bits, penalty, lat = infer.train_forward(stage, x, quantize) if fast \
                else stage(x, quantize)
            total = total + rec / s
            out.recs.append(total)
            out.bits.append(bits)
            out.latents.append(lat)
            penalty_sum = penalty_sum + penalty
        return out._replace(penalty=penalty_sum)

    def encode_frames(self, frames: np.ndarray, n_stages: int) -> list[np.ndarray]:
        """(N, frame) normalised frames → symbols (N, C, T) of the first ``n_stages`` stages."""
        x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))
        total = torch.zeros_like(x)
        symbols = []
        with torch.inference_mode():
            for k in range(n_stages):
                stage, s = self.nwc_stages[k], self.scale(k)
                sym = stage.quantizer.to_symbols(infer.encode(stage, (x - total) * s).numpy())
                symbols.append(sym)
                if k + 1 < n_stages:  # closed loop: the next stage codes what the decoder missed
                    y = infer.decode(stage, torch.from_numpy(stage.quantizer.from_symbols(sym)),
                                     exact=True)  # bit-identical codes (codec/infer.py)
                    total = total + y / s
        return symbols

    def decode_frames(self, symbols: list[np.ndarray]) -> np.ndarray:
        """Symbols of the first len(symbols) stages → (N, frame) summed reconstruction."""
        total = None
        with torch.inference_mode():
            for k, sym in enumerate(symbols):
                stage = self.nwc_stages[k]
                q = torch.from_numpy(stage.quantizer.from_symbols(sym))
                y = infer.decode(stage, q) / self.scale(k)
                total = y if total is None else total + y
        assert total is not None
        return total.numpy()
