"""Training a tier: the loop behind ``nwc train``.

One step codes a batch of gain-normalised packets (several frames each), overlap-adds the
decoded frames exactly as the decoder does, and minimises

    time-domain error + w_mel · multi-resolution log-mel distance + λ · bits + w_q · penalty

where ``bits`` is the quantizer's differentiable rate estimate. λ is driven by a controller
toward a target number of bits per symbol; the target starts high and ramps down to the
bitrate's value (a sudden drop destroys quality: prototype-lessons §2), and it is corrected
after every dev evaluation by the ratio of the really entropy-coded rate to the estimate.

Checkpoints (safetensors + JSON, no pickle) are written atomically every few minutes, so a
killed run resumes where it stopped. Under ``torchrun`` the same loop runs data-parallel
(NCCL on GPUs, gloo on CPUs); rank 0 evaluates, logs and writes.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

from ..formats.container import END, Packet, encode_packet
from . import api, entropy
from .data import PacketSampler, list_audio, load_mono
from .framing import Framing, split_frames
from .gain import GAIN_BITS
from .losses import mel_distance, time_mse
from .model import NWC, NWCConfig, count_parameters
from .quantize import channel_histogram
from .tier import Tier, build, load_path


@dataclass
class TrainConfig:
    """Everything one training run needs (recorded in the tier JSON)."""

    data: str
    out: str
    bitrate: float = 16000.0           # target real bitrate, bits/s (mono)
    name: str = ""
    sample_rate: int = 16000
    max_steps: int = 0                 # 0 = no step limit
    max_minutes: float = 0.0           # 0 = no time limit
    batch: int = 8                     # packets per step
    lr: float = 1e-3
    lr_final: float = 1e-4
    warmup_steps: int = 200            # steps without quantization
    ramp_fraction: float = 0.4         # part of the run over which the rate target falls
    ramp_start: float = 2.0            # initial target as a multiple of the final one
    w_mel: float = 0.1
    w_penalty: float = 0.1
    eval_minutes: float = 10.0
    eval_clips: int = 16
    checkpoint_minutes: float = 3.0
    seed: int = 0
    device: str = "auto"
    threads: int = 1
    resume: bool = False
    init_from: str = ""
    run_dir: str = ""
    model: dict = field(default_factory=dict)   # NWCConfig overrides
    packet_frames: int = 16


def parse_bitrate(text: str) -> float:
    """'16k' → 16000.0, '24000' → 24000.0."""
    t = text.strip().lower().removesuffix("bps").removesuffix("b")
    mult = 1000.0 if t.endswith("k") else 1.0
    value = float(t.rstrip("k")) * mult
    if not 500 <= value <= 1_000_000:
        raise ValueError(f"bitrate {text!r} out of range (0.5k to 1000k)")
    return value


def overlap_add(frames: torch.Tensor, framing: Framing) -> torch.Tensor:
    """(B, n, frame) decoded frames → (B, span) with the decoder's synthesis windows."""
    b, n, _ = frames.shape
    windows = torch.from_numpy(np.stack([framing.window(j == 0, j == n - 1) for j in range(n)]))
    frames = frames * windows.to(frames.device)
    out = frames.new_zeros(b, framing.packet_span(n))
    for j in range(n):
        out[:, j * framing.hop: j * framing.hop + framing.frame] += frames[:, j]
    return out


class RateController:
    """Multiplicative controller of the rate weight λ toward a bits-per-symbol target."""

    def __init__(self, log_lam: float = math.log(0.01), gain: float = 0.02) -> None:
        self.log_lam = log_lam
        self.gain = gain
        self.ema: float | None = None

    @property
    def lam(self) -> float:
        return math.exp(self.log_lam)

    def update(self, bits: float, target: float) -> None:
        self.ema = bits if self.ema is None else 0.9 * self.ema + 0.1 * bits
        err = (self.ema - target) / max(target, 1e-3)
        self.log_lam = float(np.clip(self.log_lam + self.gain * np.clip(err, -1, 1), -12, 4))


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def code_tables(model: NWC, sampler: PacketSampler, device: torch.device, n_packets: int = 256
                ) -> entropy.CodeTables:
    """Integer code tables from the hard symbol histogram of ``n_packets`` random packets."""
    q = model.quantizer
    hist = np.zeros((model.cfg.code_channels, q.n_symbols), dtype=np.int64)
    f = sampler.framing
    with torch.inference_mode():
        for _ in range(max(1, n_packets // 32)):
            seg = sampler.batch(32)
            frames = split_frames(seg, f, f.packet_frames).reshape(-1, f.frame)
            lat = model.encode(torch.from_numpy(frames).to(device)).cpu().numpy()
            hist += channel_histogram(q.to_symbols(lat), q.n_symbols)
    return entropy.tables_from_histogram(hist)


def evaluate(tier: Tier, clips: list[np.ndarray]) -> dict:
    """Code dev clips through the real coder and container; PESQ-WB, STOI and real kbps."""
    from pesq import pesq
    from pystoi import stoi

    sr = tier.sample_rate
    total_bytes = 0
    ideal_bits = 0.0
    seconds = 0.0
    scores_pesq, scores_stoi = [], []
    for x in clips:
        packets = api.encode_array(tier, x, sr)
        h = api.header_for(tier, sr, 1, x.shape[0])
        end = Packet(kind=END, seq=len(packets), granule=x.shape[0], side=b"", layers=[],
                     original_samples=x.shape[0])
        total_bytes += sum(len(encode_packet(p)) for p in packets) + len(encode_packet(end))
        for p in packets:
            n = tier.framing.frames_for(p.granule - p.seq * tier.framing.packet_hop)
            shape = (n, tier.config.code_channels, tier.model.code_steps)
            ideal_bits += tier.tables.ideal_bits(entropy.decode(p.layers[0], tier.tables, shape))
        y = api.decode_packets(tier, h, packets + [end])[:, 0]
        seconds += x.shape[0] / sr
        try:
            scores_pesq.append(pesq(sr, x, y, "wb"))
        except Exception:  # PESQ refuses clips with no detectable speech
            pass
        scores_stoi.append(stoi(x, y, sr, extended=False))
    return {
        "kbps": 8 * total_bytes / seconds / 1000,
        "ideal_kbps": ideal_bits / seconds / 1000,
        "pesq_wb": float(np.mean(scores_pesq)) if scores_pesq else float("nan"),
        "stoi": float(np.mean(scores_stoi)),
        "clips": len(clips),
        "seconds": round(seconds, 1),
    }


def _save_checkpoint(path: Path, model: NWC, opt: torch.optim.Optimizer, state: dict) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for i, group in enumerate(opt.param_groups):
        for j, p in enumerate(group["params"]):
            st = opt.state.get(p, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in st:
                    tensors[f"opt.{i}.{j}.{key}"] = st[key].detach().cpu().contiguous()
            if "step" in st:
                state.setdefault("opt_steps", {})[f"{i}.{j}"] = float(st["step"])
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / "ckpt.safetensors.tmp"))
    (path / "ckpt.json.tmp").write_text(json.dumps(state))
    os.replace(path / "ckpt.safetensors.tmp", path / "ckpt.safetensors")
    os.replace(path / "ckpt.json.tmp", path / "ckpt.json")


def _load_checkpoint(path: Path, model: NWC, opt: torch.optim.Optimizer) -> dict:
    tensors = load_file(str(path / "ckpt.safetensors"))
    state = json.loads((path / "ckpt.json").read_text())
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")},
                          strict=True)
    for i, group in enumerate(opt.param_groups):
        for j, p in enumerate(group["params"]):
            key = f"opt.{i}.{j}"
            if f"{key}.exp_avg" in tensors:
                opt.state[p] = {
                    "step": torch.tensor(state["opt_steps"][f"{i}.{j}"]),
                    "exp_avg": tensors[f"{key}.exp_avg"].to(p.device),
                    "exp_avg_sq": tensors[f"{key}.exp_avg_sq"].to(p.device),
                }
    return state


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def train(cfg: TrainConfig, progress: bool = True) -> Tier | None:
    """Run training; returns the exported tier on rank 0 (None on other ranks)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = _device(cfg.device)
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + rank)

    framing = Framing(packet_frames=cfg.packet_frames)
    out = Path(cfg.out)
    name = cfg.name or out.name
    run_dir = Path(cfg.run_dir) if cfg.run_dir else out.parent / f".{out.name}.run"

    train_files, dev_files = list_audio(Path(cfg.data))
    if not train_files:
        raise ValueError(f"no audio files found under {cfg.data}")
    t0 = time.time()
    signals = [load_mono(p, cfg.sample_rate) for p in train_files]
    sampler = PacketSampler(signals, framing, seed=cfg.seed * 1000 + rank)
    dev_pick = dev_files[:: max(1, len(dev_files) // cfg.eval_clips)][: cfg.eval_clips] \
        if dev_files else []
    dev = [load_mono(p, cfg.sample_rate)[: 8 * cfg.sample_rate] for p in dev_pick]
    dev = [d for d in dev if d.shape[0] >= cfg.sample_rate]
    train_seconds = sum(s.shape[0] for s in signals) / cfg.sample_rate
    if rank == 0:
        _log(f"data: {len(train_files)} train files ({train_seconds / 60:.1f} min), "
             f"{len(dev)} dev clips, loaded in {time.time() - t0:.0f} s")

    mcfg = NWCConfig(**cfg.model)
    mcfg.frame = framing.frame
    model = NWC(mcfg)
    if cfg.init_from:
        src = load_path(Path(cfg.init_from).with_suffix(".json"))
        model.load_state_dict(src.model.state_dict(), strict=True)
    model.to(device)
    net: torch.nn.Module = model
    if world > 1:
        # The quantizer's parameters get no gradient during warm-up (no quantization, no rate
        # term), which plain DDP rejects.
        net = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    ctrl = RateController()
    step, elapsed, history = 0, 0.0, []
    rate_fix = 1.0   # real coded bits / estimated bits, from the last evaluation
    if cfg.resume and (run_dir / "ckpt.json").exists():
        st = _load_checkpoint(run_dir, model, opt)
        step, elapsed = st["step"], st["elapsed"]
        ctrl.log_lam, ctrl.ema, rate_fix = st["log_lam"], st["ema"], st.get("rate_fix", 1.0)
        history = st.get("history", [])
        if rank == 0:
            _log(f"resumed {run_dir} at step {step} ({elapsed / 60:.1f} min)")

    side_bps = GAIN_BITS * cfg.sample_rate / framing.packet_hop
    sym_per_s = (model.code_steps * mcfg.code_channels) * cfg.sample_rate / framing.hop
    # Code bits per symbol; coder flushes and packet headers are folded into ``rate_fix``.
    target = (cfg.bitrate - side_bps) / sym_per_s

    def progress_of() -> float:
        parts = []
        if cfg.max_steps:
            parts.append(step / cfg.max_steps)
        if cfg.max_minutes:
            parts.append(elapsed / 60 / cfg.max_minutes)
        return min(1.0, max(parts)) if parts else 0.0

    bar = None
    if rank == 0 and progress:
        from tqdm import tqdm
        bar = tqdm(total=cfg.max_steps or None, initial=step, file=sys.stderr, unit="step",
                   dynamic_ncols=True, mininterval=2.0)
    last_ckpt = last_eval = time.time()
    start_wall = time.time() - elapsed
    tier = None

    def export(metrics: dict | None) -> Tier:
        model.eval()
        tables = code_tables(model, sampler, device)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        t = build(name, cfg.sample_rate, framing, mcfg, tables, state=state)
        if metrics is None and dev:
            metrics = evaluate(t, dev)
        t.meta.update({
            "target_kbps": cfg.bitrate / 1000,
            "dev": metrics or {},
            "parameters": {"encoder": count_parameters(model.encoder),
                           "decoder": count_parameters(model.decoder),
                           "quantizer": count_parameters(model.quantizer)},
            "training": {"steps": step, "minutes": round(elapsed / 60, 1),
                         "cpu_threads": cfg.threads, "world_size": world,
                         "device": str(device), "data": str(cfg.data),
                         "train_minutes_of_audio": round(train_seconds / 60, 1),
                         "config": asdict(cfg)},
        })
        model.train()
        return t

    def checkpoint() -> None:
        _save_checkpoint(run_dir, model, opt, {
            "step": step, "elapsed": elapsed, "log_lam": ctrl.log_lam, "ema": ctrl.ema,
            "rate_fix": rate_fix, "history": history})

    while True:
        p = progress_of()
        if (cfg.max_steps and step >= cfg.max_steps) or (cfg.max_minutes and p >= 1.0):
            break
        quantize = step >= cfg.warmup_steps
        ramp = min(1.0, p / cfg.ramp_fraction) if cfg.ramp_fraction > 0 else 1.0
        goal = target * (cfg.ramp_start + (1.0 - cfg.ramp_start) * ramp)
        goal_est = goal / rate_fix
        for g in opt.param_groups:
            g["lr"] = cfg.lr_final + 0.5 * (cfg.lr - cfg.lr_final) * (1 + math.cos(math.pi * p))

        seg = torch.from_numpy(sampler.batch(cfg.batch)).to(device)
        frames = seg.unfold(1, framing.frame, framing.hop).reshape(-1, framing.frame)
        rec_frames, bits, penalty, lat = net(frames, quantize)
        rec = overlap_add(rec_frames.reshape(cfg.batch, -1, framing.frame), framing)
        dist_loss = time_mse(rec, seg) + cfg.w_mel * mel_distance(rec, seg, cfg.sample_rate)
        loss = dist_loss
        if quantize:
            loss = loss + ctrl.lam * bits + cfg.w_penalty * penalty
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

        hard = model.quantizer.hard_bits(lat.detach()).detach()
        if world > 1:
            dist.all_reduce(hard)
            hard = hard / world
        if quantize:
            ctrl.update(float(hard), goal_est)
        step += 1
        elapsed = time.time() - start_wall
        kbps_now = (float(hard.detach()) * rate_fix * sym_per_s + side_bps) / 1000
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{float(dist_loss):.3f}", bits=f"{float(hard):.2f}",
                            kbps=f"{kbps_now:.1f}", lam=f"{ctrl.lam:.3g}", refresh=False)
        if rank != 0:
            continue
        now = time.time()
        if quantize and dev and now - last_eval > cfg.eval_minutes * 60:
            t = export(None)
            m = t.meta["dev"]
            # Real coded bits (tables, coder flushes, packet headers) per estimated code bit.
            est_bps = float(ctrl.ema) * sym_per_s
            rate_fix = float(np.clip((m["kbps"] * 1000 - side_bps) / max(est_bps, 1.0), 0.5, 2.0))
            history.append({"step": step, "minutes": round(elapsed / 60, 1), **m})
            _log(f"[eval] step {step} {elapsed / 60:.1f} min: {json.dumps(m)}")
            t.save(out, {"history": history})
            last_eval = time.time()
        if now - last_ckpt > cfg.checkpoint_minutes * 60:
            checkpoint()
            last_ckpt = time.time()

    if bar is not None:
        bar.close()
    if rank == 0:
        checkpoint()
        tier = export(None)
        tier.meta["history"] = history + [{"step": step, "minutes": round(elapsed / 60, 1),
                                           **tier.meta["dev"]}]
        tier.save(out)
        _log(f"wrote {out}.safetensors / .json: {json.dumps(tier.meta['dev'])}")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return tier
