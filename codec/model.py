"""The NWC module: a 1-D convolutional autoencoder on waveform frames.

Two layer plans share the same building blocks (gated residual blocks with depthwise-separable
dilated convolutions, strided down-sampling, sub-pixel up-sampling):

* ``paper``: Zhen & Kim's layer list at full sample rate (k=55 convolution to 100 channels,
  2 gated blocks, stride-2 conv, 2 gated blocks, k=55 conv to one code channel; the decoder
  mirrors it with a depthwise-separable conv and a sub-pixel shuffle to 50 channels). About
  6 GFLOP per audio second: accurate but slow on a CPU.
* ``fast``: the same structure behind a learned strided analysis filterbank (a stride-8
  convolution, like learned-transform codecs) and a transposed synthesis filterbank, so the
  residual blocks run at 1/8 or 1/16 of the sample rate. Codes are ``code_channels`` channels
  at 1/16 of the frame rate: 8 × 32 = 256 symbols per 512-sample frame, as in the paper.

Both map (batch, frame) float frames to (batch, code_channels, steps) latents and back.

HARP-Net (WASPAA'21, prior-art §F), fast plan only: with ``harp = h > 0`` the skip between the
mirrored 1/8-rate layers (after the encoder's first residual stack, before the decoder's last)
is a small autoencoder of its own: a stride-2 convolution squeezes the encoder's features to
``h`` extra code channels at the code rate, quantized and entropy-coded with the main codes
(their bits count in the rate), and a convolution plus sub-pixel shuffle adds them back into the
decoder. The latents are then (batch, code_channels + h, steps): the rest of the codec sees only
more symbol channels.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .config import NWCConfig  # noqa: F401 - re-exported: the config is torch-free
from .quantize import Quantizer, make_quantizer

Runner = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def _call(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module(x)


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


class GatedBlock(nn.Module):
    """Residual block: 1×1 squeeze, depthwise dilated conv with a tanh gate, 1×1 expand."""

    def __init__(self, channels: int, narrow: int, kernel: int, dilation: int,
                 in_channels: int | None = None, activate: bool = True) -> None:
        super().__init__()
        cin = in_channels or channels
        self.squeeze = nn.Conv1d(cin, narrow, 1)
        pad = dilation * (kernel - 1) // 2
        self.depthwise = nn.Conv1d(narrow, 2 * narrow, kernel, padding=pad, dilation=dilation,
                                   groups=narrow)
        self.expand = nn.Conv1d(narrow, channels, 1)
        # A 1-channel input broadcasts over the residual; other widths need a 1×1 projection.
        self.skip = nn.Conv1d(cin, channels, 1) if cin not in (1, channels) else None
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.squeeze(x), 0.2)
        a, b = self.depthwise(h).chunk(2, dim=1)
        y = self.expand(a * torch.tanh(b)) + (x if self.skip is None else self.skip(x))
        return F.leaky_relu(y, 0.2) if self.activate else y


def _stack(channels: int, narrow: int, kernel: int, in_channels: int | None = None
           ) -> nn.Sequential:
    return nn.Sequential(
        GatedBlock(channels, narrow, kernel, 1, in_channels=in_channels),
        GatedBlock(channels, narrow, kernel, 2, activate=False),
    )


class SubPixel1d(nn.Module):
    """Sub-pixel up-sampling: (B, C·r, T) → (B, C, T·r) by interleaving channel groups."""

    def __init__(self, r: int) -> None:
        super().__init__()
        self.r = r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        return x.reshape(b, c // self.r, self.r, t).permute(0, 1, 3, 2).reshape(b, c // self.r,
                                                                               t * self.r)


class SeparableConv1d(nn.Sequential):
    """Depthwise then pointwise convolution (Keras ``SeparableConv1D``)."""

    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__(nn.Conv1d(cin, cin, kernel, padding=kernel // 2, groups=cin),
                         nn.Conv1d(cin, cout, 1))


class NWC(nn.Module):
    """One NWC module: encoder, quantizer and decoder over independent frames."""

    def __init__(self, cfg: NWCConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, n, k = cfg.channels, cfg.narrow, cfg.kernel
        if cfg.plan == "fast":
            pad = (cfg.fb_kernel - cfg.fb_stride) // 2
            self.encoder = nn.Sequential(
                nn.Conv1d(1, c, cfg.fb_kernel, stride=cfg.fb_stride, padding=pad),
                nn.LeakyReLU(0.2),
                _stack(c, n, k),
                nn.Conv1d(c, c, 4, stride=2, padding=1),
                nn.LeakyReLU(0.2),
                _stack(c, n, k),
                nn.Conv1d(c, cfg.code_channels, 1),
            )
            self.decoder = nn.Sequential(
                nn.Conv1d(cfg.code_channels, c, 3, padding=1),
                nn.LeakyReLU(0.2),
                _stack(c, n, k),
                SeparableConv1d(c, c, 9),
                nn.LeakyReLU(0.2),
                SubPixel1d(2),
                _stack(c // 2, n // 2, k),
                nn.ConvTranspose1d(c // 2, 1, cfg.fb_kernel, stride=cfg.fb_stride, padding=pad),
            )
        elif cfg.plan == "paper":
            self.encoder = nn.Sequential(
                nn.Conv1d(1, c, 55, padding=27), nn.LeakyReLU(0.2),
                _stack(c, n, 15),
                nn.Conv1d(c, c, 9, stride=2, padding=4), nn.LeakyReLU(0.2),
                _stack(c, n, 15),
                nn.Conv1d(c, cfg.code_channels, 55, padding=27),
            )
            self.decoder = nn.Sequential(
                _stack(c, n, 15, in_channels=cfg.code_channels),
                SeparableConv1d(c, c, 9), nn.LeakyReLU(0.2),
                SubPixel1d(2),
                _stack(c // 2, n, 15),
                nn.Conv1d(c // 2, 1, 55, padding=27),
            )
        else:
            raise ValueError(f"unknown layer plan {cfg.plan!r}; use 'fast' or 'paper'")
        if cfg.harp:
            if cfg.plan != "fast":
                raise ValueError("HARP-Net skips are built for the fast layer plan")
            # Hyper-autoencoded skip: encoder features at 1/8 rate → h codes at 1/16 rate →
            # c/2 decoder channels at 1/8 rate (where the decoder's sub-pixel shuffle lands).
            self.skip_enc = nn.Conv1d(c, cfg.harp, 4, stride=2, padding=1)
            self.skip_dec = nn.Sequential(nn.Conv1d(cfg.harp, c, 3, padding=1),
                                          nn.LeakyReLU(0.2), SubPixel1d(2))
        self.quantizer: Quantizer = make_quantizer(cfg.quantizer, self.symbol_channels,
                                                   cfg.levels)

    # Where the HARP skip leaves the encoder and joins the decoder (indices into the
    # Sequentials: after the first residual stack / after the sub-pixel shuffle).
    ENC_TAP, DEC_TAP = 3, 6

    @property
    def symbol_channels(self) -> int:
        """Coded channels per step: the main codes plus the HARP skip codes."""
        return self.cfg.code_channels + self.cfg.harp

    @property
    def code_steps(self) -> int:
        """Code time steps per frame."""
        return self.cfg.frame // (self.cfg.fb_stride * 2) if self.cfg.plan == "fast" \
            else self.cfg.frame // 2

    def run_encoder(self, x: torch.Tensor, run: Runner = _call) -> torch.Tensor:
        """(N, 1, frame) → latents through the encoder, each part run by ``run(part, x)``.

        The one definition of the topology: the HARP-Net skip leaves after ENC_TAP layers.
        Training runs the modules themselves; ``infer.py`` runs its faster kernels."""
        if not self.cfg.harp:
            return run(self.encoder, x)
        h = run(self.encoder[: self.ENC_TAP], x)
        return torch.cat([run(self.encoder[self.ENC_TAP:], h), run(self.skip_enc, h)], dim=1)

    def run_decoder(self, latents: torch.Tensor, run: Runner = _call,
                    layout: Callable[[torch.Tensor], torch.Tensor] = _same) -> torch.Tensor:
        """Latents → (N, 1, frame) through the decoder; the HARP-Net skip joins after DEC_TAP
        layers (``layout`` re-lays its split halves out for ``run``'s kernels)."""
        if not self.cfg.harp:
            return run(self.decoder, latents)
        main, skip = latents.split([self.cfg.code_channels, self.cfg.harp], dim=1)
        h = run(self.decoder[: self.DEC_TAP], layout(main)) + run(self.skip_dec, layout(skip))
        return run(self.decoder[self.DEC_TAP:], h)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, frame) → latents (B, symbol_channels, steps), before quantization."""
        return self.run_encoder(frames[:, None, :])

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, symbol_channels, steps) dequantized latents → (B, frame)."""
        return self.run_decoder(latents)[:, 0, :]

    def quantize(self, y: torch.Tensor, quantize: bool = True
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The quantizer, in float32 even under autocast: rounding, the noise proxy and the
        rate model need the precision (a bf16 latent near 10 is 0.06 off)."""
        if y.dtype in (torch.bfloat16, torch.float16):
            y = y.float()
        with torch.autocast(y.device.type, enabled=False):
            return self.quantizer(y, quantize)

    def forward(self, frames: torch.Tensor, quantize: bool = True):
        """Training pass: returns (reconstruction, bits per symbol, quantizer penalty, latents)."""
        y = self.encode(frames)
        yq, bits, penalty = self.quantize(y, quantize)
        return self.decode(yq), bits, penalty, y


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
