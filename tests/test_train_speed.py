"""The training step's fast path computes what the modules compute: ``infer.train_forward``
against ``NWC.forward`` (every layer plan, HARP skips), values and gradients; bf16 autocast
keeps the quantizer in float32; the trainer's kernel and precision choices."""

from __future__ import annotations

import pytest
import torch
from nwc.codec import infer
from nwc.codec.cascade import Cascade, CascadeConfig
from nwc.codec.model import NWC, NWCConfig
from nwc.train import kernels
from nwc.train.config import ConfigError, TrainConfig

PLANS = [
    {"plan": "fast", "channels": 16, "narrow": 8, "code_channels": 4},
    {"plan": "fast", "channels": 16, "narrow": 8, "code_channels": 4, "harp": 3},
    {"plan": "paper", "channels": 12, "narrow": 6, "code_channels": 2},
]


def _model(opts: dict, seed: int = 0) -> NWC:
    torch.manual_seed(seed)
    m = NWC(NWCConfig(frame=512, **opts)).double()
    for p in m.parameters():  # away from init symmetry, so every tap matters
        p.data += 0.05 * torch.randn_like(p)
    return m


@pytest.mark.parametrize("opts", PLANS, ids=["fast", "harp", "paper"])
def test_train_forward_is_the_modules_forward(opts: dict) -> None:
    m = _model(opts)
    x = torch.randn(6, 512, dtype=torch.float64) * 0.3
    ref = m(x, False)
    fast = infer.train_forward(m, x, False)
    for a, b in zip(ref, fast, strict=True):
        torch.testing.assert_close(b, a, atol=1e-10, rtol=1e-9)
    g = torch.randn_like(ref[0])
    params = [p for p in m.parameters() if p.requires_grad]
    ga = torch.autograd.grad((ref[0] * g).sum() + ref[1], params, allow_unused=True)
    gb = torch.autograd.grad((fast[0] * g).sum() + fast[1], params, allow_unused=True)
    used = 0
    for a, b in zip(ga, gb, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(b, a, atol=1e-10, rtol=1e-8)
            used += 1
    assert used == len(params)  # every weight, the rate model's included


def test_bf16_autocast_keeps_the_quantizer_in_float32() -> None:
    m = NWC(NWCConfig(frame=512, plan="fast", channels=16, narrow=8, code_channels=4))
    x = torch.randn(4, 512) * 0.3
    seen = []
    m.quantizer.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rec, bits, _, _ = infer.train_forward(m, x, True)
    assert seen == [torch.float32] and bits.dtype == torch.float32
    ref, _, _, _ = infer.train_forward(m, x, True)
    err = (rec.float() - ref).pow(2).mean() / ref.pow(2).mean()
    assert rec.shape == ref.shape and float(err.detach()) < 1e-3  # bf16 rounding only
    rec.float().pow(2).mean().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32
               for p in m.encoder.parameters())


def test_the_cascade_fast_path_matches() -> None:
    torch.manual_seed(1)
    c = Cascade(CascadeConfig(nwc=NWCConfig(frame=512, channels=16, narrow=8, code_channels=4),
                              stages=2, lpc=False)).double()
    x = torch.randn(3, 512, dtype=torch.float64)
    a, b = c(x, False), c(x, False, fast=True)
    for ra, rb in zip(a.recs, b.recs, strict=True):
        torch.testing.assert_close(rb, ra, atol=1e-10, rtol=1e-9)


def test_kernel_and_precision_choices() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert kernels.use_fast_kernels("auto", cpu) and not kernels.use_fast_kernels("auto", cuda)
    assert kernels.use_fast_kernels("fast", cuda) and not kernels.use_fast_kernels("module", cpu)
    assert kernels.autocast_dtype("fp32", cpu) is None
    assert kernels.autocast_dtype("bf16", cpu) is torch.bfloat16
    assert kernels.autocast_dtype("auto", cpu) is (torch.bfloat16 if kernels.cpu_has_bf16()
                                                   else None)
    for bad in ({"kernels": "gpu"}, {"precision": "fp16"}):
        with pytest.raises(ConfigError):
            TrainConfig(data="d", out="o", max_steps=1, **bad).check()


def test_bench_reads_a_commands_cpu_time_and_reports_failures() -> None:
    import os
    import sys

    from bench.train_speed import cpu_seconds

    env = dict(os.environ)
    busy = cpu_seconds([sys.executable, "-c", "sum(range(3 * 10 ** 7))"], env, None)
    idle = cpu_seconds([sys.executable, "-c", "import time; time.sleep(0.3)"], env, None)
    assert busy > idle > 0 and busy > 0.1  # CPU time, not wall time
    with pytest.raises(SystemExit, match="boom"):
        cpu_seconds([sys.executable, "-c", "raise SystemExit('boom')"], env, None)
