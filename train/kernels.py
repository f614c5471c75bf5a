"""How a training step computes: which kernels run the stages, in which precision.

On a CPU the stages run through ``codec.infer.train_forward`` (channels-last, GEMMs: the
same function as the modules' forward, about 1.7x faster forward and backward), under
bfloat16 autocast where the CPU has native bf16 dot products (AVX-512 BF16 or AMX), with
float32 master weights, quantizer, rate model, LPC and losses. On CUDA the modules run under
bf16 autocast (cuDNN's kernels need no help). ``--kernels module --precision fp32`` is the
reference path the fast one is measured against (``bench/train_speed.py``).
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

KERNELS = ("auto", "fast", "module")
PRECISIONS = ("auto", "bf16", "fp32")


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (otherwise bf16 is emulated, slower)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def use_fast_kernels(kernels: str, device: torch.device) -> bool:
    """``auto``: the fast kernels on a CPU, the modules elsewhere."""
    return kernels == "fast" or (kernels == "auto" and device.type == "cpu")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for the stages' forward, or None for float32 throughout."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if device.type == "cpu" and cpu_has_bf16() else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast on ``device`` to ``dtype``; a no-op for float32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
