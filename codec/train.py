"""Training a tier: the loop behind ``nwc train``.

One step codes a batch of gain-normalised packets (several frames each), overlap-adds the
decoded frames exactly as the decoder does, and minimises, summed over the layers trained,

    time-domain error + w_mel · multi-resolution log-mel distance + λ_k · bits_k + w_q · penalty

and with ``loss="psychoacoustic"`` (general audio, prior-art §E) also the SPL'20 terms against
the reference's MPEG-1 model-1 masking threshold, computed at the packet's real playback level:
``w_pw`` · priority-weighted log-spectral error + ``w_nmr`` · noise-to-mask ratio (dB above the
mask), on 512-sample frames of the overlap-added packet.

where ``bits_k`` is layer k's differentiable rate estimate (its stage's codes, plus the LSFs in
the base layer of an LPC tier, whose quantizer also pays ``w_lsd`` · log-spectral distortion).
With LPC the packets are the LPC residual of the pre-processed signal, computed with the
quantized filters inside the graph; the stages code the residual, but the error is measured
after the synthesis filter and de-emphasis (``lpc.synthesize_torch``), in the signal the
decoder outputs, so the loss sees what a listener hears and its gradient reaches the LSF
quantizer through the filter as well as through the rate (prior-art §C–D).
Each λ_k is driven by its own controller toward a target number of bits per symbol; the
target starts high and ramps down to the bitrate's value (a sudden drop destroys quality:
prototype-lessons §2), and it is corrected after every dev evaluation by the ratio of the
really entropy-coded rate to the estimate.

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
from . import api, entropy, lpc, psychoacoustic
from .cascade import Cascade, CascadeConfig
from .data import PacketSampler, list_audio, load_mono
from .framing import Framing, split_frames
from .gain import GAIN_BITS, gain_code, gain_value
from .losses import mel_distance, noise_to_mask_loss, priority_weighted_loss, time_mse
from .model import NWCConfig, count_parameters
from .quantize import channel_histogram
from .tier import Tier, build, load_path


@dataclass
class TrainConfig:
    """Everything one training run needs (recorded in the tier JSON)."""

    data: str
    out: str
    bitrate: float = 16000.0           # target real bitrate of the full stream, bits/s (mono)
    layer_bitrates: list = field(default_factory=list)  # cumulative per layer; [] = [bitrate]
    lpc: bool = False                  # LPC front end (module 0 of the cascade)
    freeze: int = 0                    # lower stages kept fixed (greedy layer-wise training)
    res_scale: float = 4.0
    loss: str = "plain"                # "plain" | "psychoacoustic"
    w_pw: float = 0.02                 # priority-weighted log-spectral error, per dB²
    w_nmr: float = 0.1                 # mean noise-to-mask ratio, per dB above the mask
    w_lsd: float = 0.002               # LSF quantizer's distortion weight, per dB²
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


PSY_FFT = 512     # psychoacoustic model frame (MPEG-1 model 1's FFT size)
MAX_BAD_STEPS = 50  # consecutive non-finite steps tolerated before training gives up
LPC_WARM = 1024   # pre-filter warm-up samples before a training packet (high-pass transient)


def _row_gains(rows: np.ndarray) -> np.ndarray:
    """The encoder's quantized gain of each row (packet), as float32."""
    return np.array([gain_value(gain_code(row)) for row in rows], np.float32)


def packet_inputs(model: Cascade, raw: np.ndarray, framing: Framing, sample_rate: int,
                  quantize: bool = True) -> tuple[torch.Tensor, dict]:
    """Raw segments (B, LPC_WARM + span) → normalised packets (B, span) the stages code.

    Plain tiers: the segment gain-normalised (as the encoder does). LPC tiers: the residual of
    the pre-processed segment under the quantized filters (differentiable w.r.t. the LSF
    quantizer), normalised by its own gain; ``extra`` carries the LSF rate and distortion.
    """
    f = framing
    span = f.packet_span(f.packet_frames)
    if model.lsf is None:
        seg = raw[:, -span:]
        g = _row_gains(seg)[:, None]
        return torch.from_numpy(seg / g), {"gain": torch.from_numpy(g)}
    device = next(model.parameters()).device
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
    aq = lpc.lsf_to_lpc_torch(lsf_hat)
    lsd = lpc.log_spectral_distortion(torch.from_numpy(a_ref.astype(np.float32)).to(device), aq)
    idx = torch.from_numpy(lpc.set_index(span, f.hop, f.overlap, p)).to(device)
    x_ext = torch.from_numpy(xp[:, LPC_WARM - lpc.ORDER:].astype(np.float32)).to(device)
    sets = aq.reshape(b, p + 1, -1)
    r = lpc.residual_torch(x_ext, sets, idx)
    g = _row_gains(r.detach().cpu().numpy())
    r = r / torch.from_numpy(g)[:, None].to(device)
    # What the decoder reproduces (the high-passed input), normalised by its own gain, and the
    # synthesis path that takes residual error there: the loss is measured in that domain.
    sig = hp[:, LPC_WARM:]
    g_sig = _row_gains(sig)
    return r, {"lsf_bits": bits, "lsd": lsd, "lsf": lsf, "idx": idx,
               "synth": lpc.synthesis_responses(sets),
               "sig": torch.from_numpy((sig / g_sig[:, None]).astype(np.float32)).to(device),
               "ratio": torch.from_numpy(g / g_sig)[:, None].to(device)}


def seed_from(model: Cascade, src: Cascade) -> None:
    """Start ``model`` from a trained cascade with as many or fewer stages: its stages and LSF
    quantizer are copied, and each extra stage starts as a copy of its top stage.

    A fresh stage asked for a fraction of a bit per code (a 3 kbps layer) collapses to sending
    nothing (measured: 0.14 of 3 kbps after 1,200 steps); a trained autoencoder already makes
    informative codes from the rescaled residual, and the new layer then carries its rate."""
    model.load_state_dict(src.state_dict(), strict=False)
    top = src.stages[-1].state_dict()
    for stage in model.stages[len(src.stages):]:
        stage.load_state_dict(top)


def code_tables(model: Cascade, sampler: PacketSampler, device: torch.device,
                sample_rate: int, n_packets: int = 256
                ) -> tuple[list[entropy.CodeTables], entropy.CodeTables | None]:
    """Integer code tables from the hard symbol histograms of ``n_packets`` random packets."""
    stages = list(model.stages)
    hists = [np.zeros((m.symbol_channels, m.quantizer.n_symbols), np.int64) for m in stages]
    lsf_hist = None if model.lsf is None else np.zeros((lpc.ORDER, model.lsf.n_symbols),
                                                       np.int64)
    f = sampler.framing
    with torch.inference_mode():
        for _ in range(max(1, n_packets // 32)):
            x, extra = packet_inputs(model, sampler.raw_batch(32, LPC_WARM), f, sample_rate)
            frames = split_frames(x.cpu().numpy(), f, f.packet_frames).reshape(-1, f.frame)
            for k, sym in enumerate(model.encode_frames(frames, len(stages))):
                hists[k] += channel_histogram(sym, stages[k].quantizer.n_symbols)
            if lsf_hist is not None:
                lsf_hist += channel_histogram(model.lsf.to_symbols(extra["lsf"].cpu().numpy()),
                                              model.lsf.n_symbols)
    tables = [entropy.tables_from_histogram(h) for h in hists]
    return tables, None if lsf_hist is None else entropy.tables_from_histogram(lsf_hist)


def _clip_scores(x: np.ndarray, y: np.ndarray, sr: int) -> dict[str, float]:
    """Per-clip quality: PESQ-WB and STOI for 16 kHz tiers; SI-SNR and ViSQOL (audio mode,
    when installed) for general-audio tiers, which PESQ and STOI do not cover."""
    if sr == 16000:
        from pesq import pesq
        from pystoi import stoi

        out = {"stoi": float(stoi(x, y, sr, extended=False))}
        try:
            out["pesq_wb"] = float(pesq(sr, x, y, "wb"))
        except Exception:  # PESQ refuses clips with no detectable speech
            pass
        return out
    from . import metrics

    out = {"si_snr": metrics.si_snr(x, y)}
    if not metrics.missing_packages(("visqol",)):
        out["visqol"] = metrics.visqol_for("audio")(x, y, sr)
    return out


def evaluate(tier: Tier, clips: list[np.ndarray]) -> list[dict]:
    """Code dev clips through the real coder and container; real kbps and quality (PESQ-WB and
    STOI at 16 kHz, else SI-SNR and ViSQOL audio) of every layer prefix (a stream cut to k
    layers is exactly a k-layer encode)."""
    sr = tier.sample_rate
    encoded = [api.encode_array(tier, x, sr) for x in clips]
    seconds = sum(x.shape[0] for x in clips) / sr
    # Information content of each layer's symbols under the shipped tables (the ideal rate).
    f = tier.framing
    ideal = [0.0] * tier.layers
    for packets in encoded:
        for p in packets:
            n = f.frames_for(p.granule - p.seq * f.packet_hop)
            for k, layer in enumerate(p.layers):
                ideal[k] += api.layer_ideal_bits(tier, k, layer, n)
    results = []
    for k in range(1, tier.layers + 1):
        total_bytes = 0
        scores: dict[str, list[float]] = {}
        for x, packets in zip(clips, encoded, strict=False):
            cut = [Packet(kind=p.kind, seq=p.seq, granule=p.granule, side=p.side,
                          layers=p.layers[:k]) for p in packets]
            h = api.header_for(tier, sr, 1, x.shape[0], layers=k)
            end = Packet(kind=END, seq=len(cut), granule=x.shape[0], side=b"", layers=[],
                         original_samples=x.shape[0])
            total_bytes += sum(len(encode_packet(p)) for p in cut) + len(encode_packet(end))
            y = api.decode_packets(tier, h, cut + [end])[:, 0]
            for name, v in _clip_scores(x, y, sr).items():
                scores.setdefault(name, []).append(v)
        row = {"layers": k, "kbps": 8 * total_bytes / seconds / 1000,
               "ideal_kbps": sum(ideal[:k]) / seconds / 1000}
        if sr == 16000:
            row["pesq_wb"] = float(np.mean(scores["pesq_wb"])) if "pesq_wb" in scores \
                else float("nan")
        row.update({name: float(np.mean(v)) for name, v in scores.items() if name != "pesq_wb"})
        row.update({"clips": len(clips), "seconds": round(seconds, 1)})
        results.append(row)
    return results


def _save_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer,
                     state: dict) -> None:
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


def _load_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict:
    tensors = load_file(str(path / "ckpt.safetensors"))
    state = json.loads((path / "ckpt.json").read_text())
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    if not any(k.startswith("stages.") for k in weights):  # a single-module run (format 1)
        weights = {f"stages.0.{k}": v for k, v in weights.items()}
    model.load_state_dict(weights, strict=True)
    if "ctrl" not in state:  # single-layer controller state of format-1 runs
        state["ctrl"] = [[state["log_lam"], state["ema"]]]
        state["rate_fix"] = [state.get("rate_fix", 1.0)]
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


def _excerpt(x: np.ndarray, n: int) -> np.ndarray:
    """``n`` samples of a dev file: its start, or its middle for long files (music tracks
    often open with silence or a fade)."""
    start = (x.shape[0] - n) // 2 if x.shape[0] > 2 * n else 0
    return x[start: start + n]


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
    out_path = Path(cfg.out)
    name = cfg.name or out_path.name
    run_dir = Path(cfg.run_dir) if cfg.run_dir \
        else out_path.parent / f".{out_path.name}.run"

    train_files, dev_files = list_audio(Path(cfg.data))
    if not train_files:
        raise ValueError(f"no audio files found under {cfg.data}")
    t0 = time.time()
    signals = [load_mono(p, cfg.sample_rate) for p in train_files]
    sampler = PacketSampler(signals, framing, seed=cfg.seed * 1000 + rank)
    dev_pick = dev_files[:: max(1, len(dev_files) // cfg.eval_clips)][: cfg.eval_clips] \
        if dev_files else []
    dev = [_excerpt(load_mono(p, cfg.sample_rate), 8 * cfg.sample_rate) for p in dev_pick]
    dev = [d for d in dev if d.shape[0] >= cfg.sample_rate]
    train_seconds = sum(s.shape[0] for s in signals) / cfg.sample_rate
    if rank == 0:
        _log(f"data: {len(train_files)} train files ({train_seconds / 60:.1f} min), "
             f"{len(dev)} dev clips, loaded in {time.time() - t0:.0f} s")

    mcfg = NWCConfig(**cfg.model)
    mcfg.frame = framing.frame
    if cfg.loss not in ("plain", "psychoacoustic"):
        raise ValueError(f"unknown loss {cfg.loss!r}; use plain or psychoacoustic")
    if cfg.loss == "psychoacoustic" and cfg.lpc:
        raise ValueError("the psychoacoustic loss needs the signal, not an LPC residual")
    rates = [float(r) for r in cfg.layer_bitrates] or [cfg.bitrate]
    if any(b <= a for a, b in zip(rates, rates[1:], strict=False)):
        raise ValueError("layer bitrates must increase")
    ccfg = CascadeConfig(nwc=mcfg, stages=len(rates), lpc=cfg.lpc, res_scale=cfg.res_scale)
    src = None
    if cfg.init_from:
        src = load_path(Path(cfg.init_from).with_suffix(".json"))
        if src.lpc != cfg.lpc or src.layers > len(rates):
            raise ValueError(f"--init-from tier has {src.layers} layer(s), lpc={src.lpc}: it "
                             "must match --lpc and have at most as many layers")
        ccfg = CascadeConfig(nwc=src.config.nwc, stages=len(rates), lpc=cfg.lpc,
                             res_scale=src.config.res_scale, lsf_levels=src.config.lsf_levels)
    model = Cascade(ccfg)
    if src is not None:
        seed_from(model, src.model)
    elif model.lsf is not None:  # centre the LSF quantizer on the data
        with torch.no_grad():
            raw = sampler.raw_batch(64, LPC_WARM)
            fr = split_frames(lpc.preprocess(raw.astype(np.float64))[:, LPC_WARM:], framing,
                              framing.packet_frames).reshape(-1, framing.frame)
            model.lsf.mean.copy_(torch.from_numpy(
                lpc.lpc_to_lsf(lpc.lpc_analysis(fr, cfg.sample_rate)).mean(0)))
    frozen = min(cfg.freeze, len(rates) - 1)
    for k in range(frozen):
        model.stages[k].requires_grad_(False)
    if frozen and model.lsf is not None:
        model.lsf.requires_grad_(False)
    model.to(device)
    net: torch.nn.Module = model
    if world > 1:
        # The quantizer's parameters get no gradient during warm-up (no quantization, no rate
        # term), which plain DDP rejects.
        net = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    n_layers = len(rates)
    ctrls = [RateController() for _ in range(n_layers)]
    step, elapsed, history = 0, 0.0, []
    bad_steps = 0  # consecutive steps dropped for non-finite gradients
    rate_fix = [1.0] * n_layers  # real coded bits / estimated bits, from the last evaluation
    if cfg.resume and (run_dir / "ckpt.json").exists():
        st = _load_checkpoint(run_dir, model, opt)
        step, elapsed = st["step"], st["elapsed"]
        for c, (lam, ema) in zip(ctrls, st["ctrl"], strict=False):
            c.log_lam, c.ema = lam, ema
        rate_fix = st["rate_fix"]
        history = st.get("history", [])
        if rank == 0:
            _log(f"resumed {run_dir} at step {step} ({elapsed / 60:.1f} min)")

    side_bps = GAIN_BITS * cfg.sample_rate / framing.packet_hop
    sym_per_frame = model.code_steps * model.symbol_channels
    sym_per_s = sym_per_frame * cfg.sample_rate / framing.hop
    # Code bits per symbol of each layer; coder flushes and packet headers are folded into
    # ``rate_fix``. The base layer also pays the gain side info (and carries the LSFs).
    targets = [((r - lo) - (side_bps if k == 0 else 0.0)) / sym_per_s
               for k, (lo, r) in enumerate(zip([0.0] + rates[:-1], rates, strict=False))]
    if min(targets) <= 0:
        raise ValueError("a layer's bitrate is too low for its side information")

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

    def export(metrics: list[dict] | None) -> Tier:
        model.eval()
        tables, lsf_tables = code_tables(model, sampler, device, cfg.sample_rate)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        t = build(name, cfg.sample_rate, framing, ccfg, tables, state=state,
                  lsf_tables=lsf_tables)
        if metrics is None and dev:
            metrics = evaluate(t, dev)
        stage = model.stages[0]
        harp = (stage.skip_enc, stage.skip_dec) if stage.cfg.harp else ()
        enc_params = count_parameters(stage.encoder) + sum(count_parameters(m) for m in harp[:1])
        dec_params = count_parameters(stage.decoder) + sum(count_parameters(m) for m in harp[1:])
        t.meta.update({
            "target_kbps": rates[-1] / 1000,
            "target_layer_kbps": [r / 1000 for r in rates],
            "dev": (metrics or [{}])[-1],
            "dev_layers": metrics or [],
            "parameters": {"encoder": enc_params * n_layers, "decoder": dec_params * n_layers,
                           "quantizer": count_parameters(model)
                           - n_layers * (enc_params + dec_params)},
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
            "step": step, "elapsed": elapsed, "ctrl": [[c.log_lam, c.ema] for c in ctrls],
            "rate_fix": rate_fix, "history": history})

    while True:
        p = progress_of()
        if (cfg.max_steps and step >= cfg.max_steps) or (cfg.max_minutes and p >= 1.0):
            break
        quantize = step >= cfg.warmup_steps
        ramp = min(1.0, p / cfg.ramp_fraction) if cfg.ramp_fraction > 0 else 1.0
        goal = [t * (cfg.ramp_start + (1.0 - cfg.ramp_start) * ramp) / fix
                for t, fix in zip(targets, rate_fix, strict=False)]
        for g in opt.param_groups:
            g["lr"] = cfg.lr_final + 0.5 * (cfg.lr - cfg.lr_final) * (1 + math.cos(math.pi * p))

        seg, extra = packet_inputs(model, sampler.raw_batch(cfg.batch, LPC_WARM), framing,
                                   cfg.sample_rate, quantize)
        seg = seg.to(device)
        frames = seg.unfold(1, framing.frame, framing.hop).reshape(-1, framing.frame)
        out = net(frames, quantize)
        mask = None
        if cfg.loss == "psychoacoustic":
            ref_fr = seg.unfold(1, PSY_FFT, PSY_FFT // 2)
            gain_db = (20.0 * torch.log10(extra["gain"].to(device))).expand(ref_fr.shape[:2])
            mask = psychoacoustic.masking_threshold(ref_fr, cfg.sample_rate, gain_db=gain_db)
        loss = seg.new_zeros(())
        dist_loss = seg.new_zeros(())
        for k in range(frozen, n_layers):
            rec = overlap_add(out.recs[k].reshape(cfg.batch, -1, framing.frame), framing)
            ref = seg
            if "synth" in extra:  # LPC: the residual's error through the synthesis filter
                ref = extra["sig"]
                err = lpc.synthesize_torch(rec - seg, extra["synth"], extra["idx"])
                rec = ref + err * extra["ratio"]
            d = time_mse(rec, ref) + cfg.w_mel * mel_distance(rec, ref, cfg.sample_rate)
            if mask is not None:
                rec_fr = rec.unfold(1, PSY_FFT, PSY_FFT // 2)
                d = d + cfg.w_pw * priority_weighted_loss(rec_fr, ref_fr, mask) \
                    + cfg.w_nmr * noise_to_mask_loss(rec_fr, ref_fr, mask, log_ratio=True)
            dist_loss = d  # report the top layer's distortion
            loss = loss + d
        layer_bits = list(out.bits)
        if "lsf_bits" in extra:
            # LSF bits per frame, in units of the base stage's symbols.
            layer_bits[0] = layer_bits[0] + extra["lsf_bits"] * lpc.ORDER / sym_per_frame
            if not frozen:
                loss = loss + cfg.w_lsd * extra["lsd"]
        if quantize:
            for k in range(frozen, n_layers):
                loss = loss + ctrls[k].lam * layer_bits[k]
            loss = loss + cfg.w_penalty * out.penalty
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if not torch.isfinite(norm):
            # One exploding batch would poison the weights, Adam's moments and the rate
            # controllers for good (a new stage did, at step ~600): drop the step. The norm is
            # of the all-reduced gradients, so every DDP rank drops the same steps.
            bad_steps += 1
            if bad_steps > MAX_BAD_STEPS:
                raise RuntimeError(f"{bad_steps} non-finite steps in a row: lower --lr")
            continue
        bad_steps = 0
        opt.step()

        with torch.no_grad():
            hard = torch.stack([model.stages[k].quantizer.hard_bits(out.latents[k].detach())
                                for k in range(n_layers)])
            if "lsf" in extra:
                hard[0] += model.lsf.hard_bits(extra["lsf"]) * lpc.ORDER / sym_per_frame
        if world > 1:
            dist.all_reduce(hard)
            hard = hard / world
        if quantize:
            for k in range(frozen, n_layers):
                ctrls[k].update(float(hard[k]), goal[k])
        step += 1
        elapsed = time.time() - start_wall
        kbps_now = (sum(float(h) * fix for h, fix in zip(hard, rate_fix, strict=False)) * sym_per_s
                    + side_bps) / 1000
        if bar is not None:
            post = {"loss": f"{float(dist_loss.detach()):.3f}",
                    "bits": "/".join(f"{float(h):.2f}" for h in hard),
                    "kbps": f"{kbps_now:.1f}",
                    "lam": "/".join(f"{c.lam:.2g}" for c in ctrls)}
            if "lsd" in extra:
                post["lsd"] = f"{float(extra['lsd']) ** 0.5:.2f}dB"
            bar.update(1)
            bar.set_postfix(post, refresh=False)
        if rank != 0:
            continue
        now = time.time()
        if quantize and dev and now - last_eval > cfg.eval_minutes * 60:
            t = export(None)
            ms = t.meta["dev_layers"]
            # Real coded bits (tables, coder flushes, packet headers) per estimated code bit,
            # layer by layer.
            lo = 0.0
            for k, m in enumerate(ms):
                if k < frozen:
                    lo = m["kbps"] * 1000
                    continue
                est = float(ctrls[k].ema or 0.0) * sym_per_s
                real = m["kbps"] * 1000 - lo - (side_bps if k == 0 else 0.0)
                rate_fix[k] = float(np.clip(real / max(est, 1.0), 0.5, 2.0))
                lo = m["kbps"] * 1000
            history.append({"step": step, "minutes": round(elapsed / 60, 1), "layers": ms})
            _log(f"[eval] step {step} {elapsed / 60:.1f} min: {json.dumps(ms)}")
            t.save(out_path, {"history": history})
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
                                           "layers": tier.meta["dev_layers"]}]
        tier.save(out_path)
        _log(f"wrote {out_path}.safetensors / .json: {json.dumps(tier.meta['dev_layers'])}")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return tier
