"""Inference-only execution of NWC modules: the same weights, fewer and faster kernels.

``NWC.encode``/``NWC.decode`` route here under ``torch.inference_mode()``; training (autograd)
keeps the plain module calls. The runner walks the same ``nn.Sequential`` layer lists, so it
follows any layer plan, and it changes only *how* a few layers are computed:

* Depthwise convolutions (``groups > 1``) run as ``conv2d`` on a channels-last (N, C, 1, T)
  view. PyTorch's CPU ``conv1d`` sends a depthwise convolution with a channel multiplier to a
  generic oneDNN path (im2col per group); channels-last reaches oneDNN's depthwise kernel, 4-7x
  faster on these shapes. In the encoder it is used only where it is bit-identical to
  ``conv1d`` (checked on the first input of each shape, see ``_depthwise_exact``), so the
  encoder writes exactly the codes the modules' own forward gives (``tests/test_speed.py``;
  ``bench/speed.py`` also compares a minute of speech).
* Decoder only (its output is audio, where float noise is harmless; a cascade encoder's
  closed loop, whose next codes depend on it, asks for the exact path): ``tanh(b)`` as
  ``2·sigmoid(2b) − 1`` (PyTorch's CPU ``tanh`` is scalar libm, ~9x slower than its vectorised
  ``sigmoid``), and transposed convolutions as one matmul plus an overlap-add of the
  ``kernel / stride`` shifted blocks. The decoded audio moves by ~1e-6.

Inputs may live on another device than the module (the codec's numpy glue makes CPU tensors);
they are moved to the module's device and the result comes back to the input's device, so
``--device cuda`` needs no change in the glue, and everything the entropy coder sees is
quantized on the CPU from the returned latents.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from .model import NWC, GatedBlock, SubPixel1d

_SLOPE = 0.2  # the leaky ReLU slope of model.py
# Widest unfolded window (in channels × taps) the GEMM path builds: beyond it (the paper plan's
# 55-tap convolutions over 100+ channels) the copy costs more than oneDNN's own kernel.
_GEMM_MAX_WINDOW = 1024


def _conv2d(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """A ``Conv1d`` applied to an (N, C, 1, T) tensor as the equivalent ``conv2d``.

    Under CPU autocast a grouped one stays in float32: oneDNN's bf16 depthwise backward is
    twice as slow as its float32 one on these shapes (the GEMMs gain from bf16, it loses)."""
    pad = cast(tuple[int, ...], conv.padding)[0]  # numeric padding in every NWC layer
    if conv.groups > 1 and x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return F.conv2d(x.float(), conv.weight.unsqueeze(2), conv.bias, (1, conv.stride[0]),
                            (0, pad), (1, conv.dilation[0]), conv.groups)
    return F.conv2d(x, conv.weight.unsqueeze(2), conv.bias, (1, conv.stride[0]),
                    (0, pad), (1, conv.dilation[0]), conv.groups)


def _as_4d(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(2).contiguous(memory_format=torch.channels_last)


# Per depthwise layer: (input shape, threads, device) -> is channels-last bit-identical here?
_EXACT: weakref.WeakKeyDictionary[nn.Conv1d, dict[tuple, bool]] = weakref.WeakKeyDictionary()


def _depthwise_exact(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """A grouped conv on (N, C, T), channels-last where that is bit-identical to ``conv1d``.

    Whether oneDNN's two kernels sum the taps in the same order depends on the shapes (true
    for the 5-tap layers of the shipped tiers, false for the paper plan's 15 taps), so the
    first call for each input shape, thread count and device runs both, on the real input and
    on a random one (a silent start could agree by luck), and keeps the channels-last kernel
    only if both agree bit for bit; otherwise that shape stays on ``conv1d``.
    """
    seen = _EXACT.setdefault(conv, {})
    key = (tuple(x.shape), torch.get_num_threads(), x.device)
    ok = seen.get(key)
    if ok is False:
        return conv(x)
    y = _channels_last(conv, x)
    if ok is None:
        ref = conv(x)
        probe = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
        probe = probe.to(x.device, x.dtype)
        seen[key] = torch.equal(y, ref) and torch.equal(_channels_last(conv, probe), conv(probe))
        return ref
    return y


def _channels_last(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    # Back to plain (N, C, T) after it: the gate, the 1x1 convs and the residual add then see
    # exactly the layouts (so the kernels) of the module's own forward.
    return _conv2d(conv, _as_4d(x)).squeeze(2).contiguous()


def _conv_linear(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """A dense ``Conv1d`` on channels-last (N, C, 1, T) as one GEMM over (N·T', C·K) windows.

    Channels-last memory is (N, 1, T, C), so a 1×1 convolution is ``F.linear`` on it with no
    copy, and a strided one on its unfolded windows (C major, tap minor: the weight's own
    (Cout, C·K) order): GEMMs reach several times oneDNN's speed on these small 1-D shapes,
    forward and backward."""
    k, s = conv.kernel_size[0], conv.stride[0]
    pad = cast(tuple[int, ...], conv.padding)[0]
    nhwc = x.permute(0, 2, 3, 1)                                   # (N, 1, T, C), a view
    if k == 1 and s == 1 and pad == 0:
        y = F.linear(nhwc, conv.weight[:, :, 0], conv.bias)
    elif k % s == 0:
        # Windows as k/s shifted views of stride-sized blocks (tap-major, channel-minor):
        # their concatenation's backward is slicing, where unfold's is a slow scatter.
        n, _, t, c = nhwc.shape
        q, t_out = k // s, (t + 2 * pad - k) // s + 1
        blocks = F.pad(nhwc, (0, 0, pad, (t_out + q - 1) * s - t - pad))
        blocks = blocks.reshape(n, 1, t_out + q - 1, s * c)
        win = torch.cat([blocks[:, :, i:i + t_out] for i in range(q)], dim=-1) if q > 1 \
            else blocks
        y = F.linear(win, conv.weight.permute(0, 2, 1).reshape(conv.out_channels, -1),
                     conv.bias)
    else:
        win = F.pad(nhwc, (0, 0, pad, pad)).unfold(2, k, s)        # (N, 1, T', C, K)
        y = F.linear(win.reshape(*win.shape[:3], -1),
                     conv.weight.reshape(conv.out_channels, -1), conv.bias)
    return y.permute(0, 3, 1, 2)                                   # (N, Cout, 1, T'), CL


def _conv(conv: nn.Conv1d, x: torch.Tensor, cl: bool, gemm: bool = False) -> torch.Tensor:
    if cl:
        if gemm and conv.groups == 1 and conv.dilation[0] == 1 \
                and conv.in_channels * conv.kernel_size[0] <= _GEMM_MAX_WINDOW:
            return _conv_linear(conv, x)
        return _conv2d(conv, x)
    if conv.groups > 1:
        return _depthwise_exact(conv, x)
    return conv(x)


def _conv_transpose(conv: nn.ConvTranspose1d, x: torch.Tensor) -> torch.Tensor:
    """``ConvTranspose1d`` on (N, C, T) as one matmul and ``kernel/stride`` shifted adds."""
    cin, cout, k = conv.weight.shape
    s, pad = conv.stride[0], cast(tuple[int, ...], conv.padding)[0]
    if conv.groups != 1 or conv.dilation[0] != 1 or conv.output_padding[0] != 0 or k % s:
        return conv(x)
    n, _, t = x.shape
    q = k // s
    z = torch.matmul(x.transpose(1, 2), conv.weight.reshape(cin, cout * k))  # (N, T, Cout·K)
    z = z.reshape(n, t, cout, q, s)
    out = z.new_zeros(n, cout, t + q - 1, s)
    for j in range(q):  # tap block j of input step i lands on output block i + j
        out[:, :, j:j + t, :] += z[:, :, :, j, :].permute(0, 2, 1, 3)
    out = out.reshape(n, cout, (t + q - 1) * s)[:, :, pad:(t + q - 1) * s - pad]
    return out if conv.bias is None else out + conv.bias[None, :, None]


def _subpixel_nhwc(x: torch.Tensor, r: int) -> torch.Tensor:
    """``SubPixel1d`` on channels-last (N, C·r, 1, T) with one copy: out[c, t·r + i] is
    in[c·r + i, t], i.e. in NHWC memory (N, T, C, r) → (N, T, r, C)."""
    n, c, _, t = x.shape
    y = x.permute(0, 2, 3, 1).reshape(n, t, c // r, r).transpose(2, 3)
    return y.reshape(n, 1, t * r, c // r).permute(0, 3, 1, 2)


def _gated(block: GatedBlock, x: torch.Tensor, exact: bool, cl: bool, gemm: bool = False
           ) -> torch.Tensor:
    h = F.leaky_relu(_conv(block.squeeze, x, cl, gemm), _SLOPE)
    a, b = _conv(block.depthwise, h, cl).chunk(2, dim=1)
    if exact:
        g = a * torch.tanh(b)
    else:  # tanh(b) = 2·sigmoid(2b) − 1, with the vectorised sigmoid
        g = a * (torch.sigmoid(b * 2.0) * 2.0 - 1.0)
    y = _conv(block.expand, g, cl, gemm) + (x if block.skip is None
                                            else _conv(block.skip, x, cl, gemm))
    return F.leaky_relu(y, _SLOPE) if block.activate else y


def _run(layers: nn.Sequential, x: torch.Tensor, exact: bool, cl: bool, gemm: bool = False
         ) -> torch.Tensor:
    """Run ``layers`` on (N, C, T), or on channels-last (N, C, 1, T) when ``cl``."""
    for layer in layers:
        if isinstance(layer, GatedBlock):
            x = _gated(layer, x, exact, cl, gemm)
        elif isinstance(layer, nn.Conv1d):
            x = _conv(layer, x, cl, gemm)
        elif isinstance(layer, nn.Sequential):  # residual stacks, SeparableConv1d
            x = _run(layer, x, exact, cl, gemm)
        elif cl and gemm and isinstance(layer, SubPixel1d):
            x = _subpixel_nhwc(x, layer.r)
        elif cl and isinstance(layer, SubPixel1d):
            n, c, _, t = x.shape
            x = _as_4d(x.squeeze(2).reshape(n, c // layer.r, layer.r, t).transpose(2, 3)
                       .reshape(n, c // layer.r, t * layer.r))
        elif cl and isinstance(layer, nn.ConvTranspose1d):
            x = _conv_transpose(layer, x.squeeze(2)).unsqueeze(2)
        else:  # activations: elementwise, any layout
            x = layer(x)
    return x


_TARGET: torch.device | None = None  # set by use_device(); None: wherever the module is


def use_device(device: torch.device) -> None:
    """Run every NWC module on ``device`` from now on (each moves there on first use).

    Only the networks move: framing, gains, quantization to integer symbols and range coding
    stay on the CPU, so the entropy coder never sees a device-dependent float.
    """
    global _TARGET
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    _TARGET = device


def _device_of(module: nn.Module) -> torch.device:
    dev = next(module.parameters()).device
    if _TARGET is not None and dev != _TARGET:
        with torch.inference_mode(False):  # real parameters, not inference tensors
            module.to(_TARGET)
        dev = _TARGET
    return dev


def _runner(exact: bool, cl: bool, gemm: bool = False
            ) -> Callable[[nn.Module, torch.Tensor], torch.Tensor]:
    """Run a part of an NWC (a Sequential of layers, or one convolution) with these kernels."""
    def run(part: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if isinstance(part, nn.Sequential):
            return _run(part, x, exact, cl, gemm)
        assert isinstance(part, nn.Conv1d)
        return _conv(part, x, cl, gemm)
    return run


def _contiguous_cl(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)  # split views are not


def encode(model: NWC, frames: torch.Tensor) -> torch.Tensor:
    """(B, frame) → latents (B, symbol_channels, steps), bit-identical to the module's encoder.

    Plain (N, C, T) layout with only the depthwise convolutions in channels-last: running the
    whole encoder channels-last is also exact but slower (its strided convolutions lose).
    """
    dev = _device_of(model)
    x = frames.to(dev, torch.float32)[:, None, :]
    return model.run_encoder(x, _runner(exact=True, cl=False)).to(frames.device)


def decode(model: NWC, latents: torch.Tensor, exact: bool = False) -> torch.Tensor:
    """(B, symbol_channels, steps) → (B, frame), equal to the module's decoder within ~1e-6.

    Channels-last (N, C, 1, T) throughout: no layout changes between layers. With ``exact``
    (a cascade encoder's closed loop: the next stage's codes depend on this output) it runs
    like the encoder instead, bit-identical to the module's decoder.
    """
    dev = _device_of(model)
    x = latents.to(dev, torch.float32)
    if exact:
        return model.run_decoder(x, _runner(exact=True, cl=False))[:, 0, :].to(latents.device)
    y = model.run_decoder(_as_4d(x), _runner(exact=False, cl=True), _contiguous_cl)
    return y[:, 0, 0, :].to(latents.device)


def train_forward(model: NWC, frames: torch.Tensor, quantize: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``NWC.forward`` for training, differentiable, through the fast kernels: channels-last
    throughout, dense convolutions as GEMMs (``_conv_linear``), depthwise ones on oneDNN's
    channels-last kernel, the gate's tanh through sigmoid. The same function as the modules'
    forward to float rounding (``tests/test_train_speed.py``), about twice as fast per step
    on a CPU, forward and backward."""
    run = _runner(exact=False, cl=True, gemm=True)
    y = model.run_encoder(_as_4d(frames[:, None, :]), run)[:, :, 0, :]
    yq, bits, penalty = model.quantize(y, quantize)
    rec = model.run_decoder(_as_4d(yq), run, _contiguous_cl)[:, 0, 0, :]
    return rec, bits, penalty, y


class DeviceError(RuntimeError):
    """The requested compute device is not available."""


def pick_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    name = name.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise DeviceError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} requested but CUDA is not available "
                          "(no GPU or a CPU-only torch); use --device cpu")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DeviceError(f"device {name!r} requested but only {torch.cuda.device_count()} "
                          "CUDA device(s) exist")
    return dev
