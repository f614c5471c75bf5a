"""The training loop behind ``nwc train``: a ``Trainer`` whose step, evaluation, export and
checkpoint are methods.

One step codes a batch of gain-normalised packets (several frames each), overlap-adds the
decoded frames exactly as the decoder does, and minimises, summed over the layers trained,

    distortion (objective.py: weighted named terms) + λ_k · bits_k + w_penalty · penalty

where ``bits_k`` is layer k's differentiable rate estimate (its stage's codes, plus the LSFs in
the base layer of an LPC tier, whose quantizer also pays ``w_lsd`` · log-spectral distortion)
and λ_k is driven by its rate controller (rate.py). Under ``torchrun`` the same loop runs
data-parallel (NCCL on GPUs, gloo on CPUs); rank 0 evaluates, logs and writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..codec import lpc, tierfile
from ..codec.cascade import Cascade, CascadeConfig, StageOutput
from ..codec.framing import Framing, split_frames
from ..codec.gain import GAIN_BITS
from ..codec.model import NWCConfig
from ..codec.tier import Tier, build, load_path
from . import checkpoint, kernels, rate
from .config import ConfigError, TrainConfig
from .data import PacketSampler, list_audio, load_mono, training_signals
from .evaluate import evaluate, excerpt
from .export import code_tables, parameter_counts, seed_from
from .inputs import LPC_WARM, Batch, make_batch
from .objective import Pair, distortion

MAX_BAD_STEPS = 50  # consecutive non-finite steps tolerated before training gives up


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def overlap_add(frames: torch.Tensor, framing: Framing) -> torch.Tensor:
    """(B, n, frame) decoded frames → (B, span) with the decoder's synthesis windows."""
    b, n, _ = frames.shape
    windows = torch.from_numpy(np.stack([framing.window(j == 0, j == n - 1) for j in range(n)]))
    frames = frames * windows.to(frames.device)
    out = frames.new_zeros(b, framing.packet_span(n))
    for j in range(n):
        out[:, j * framing.hop: j * framing.hop + framing.frame] += frames[:, j]
    return out


@dataclass
class Data:
    """The run's audio: a packet sampler over the training files and mono dev clips."""

    sampler: PacketSampler
    dev: list[np.ndarray]
    train_seconds: float
    files: int


def load_data(cfg: TrainConfig, framing: Framing, rank: int) -> Data:
    """Load every training file once (mono, tier rate) and up to ``eval_clips`` dev clips."""
    train_files, dev_files = list_audio(Path(cfg.data))
    if not train_files:
        raise ConfigError(f"no audio files found under {cfg.data}")
    signals = training_signals(train_files, cfg.sample_rate, cfg.stereo_data)
    sampler = PacketSampler(signals, framing, seed=cfg.seed * 1000 + rank,
                            stereo_choice="lr" if cfg.lpc else "auto")
    pick = dev_files[:: max(1, len(dev_files) // cfg.eval_clips)][: cfg.eval_clips] \
        if dev_files and cfg.eval_clips > 0 else []
    dev = [excerpt(load_mono(p, cfg.sample_rate), 8 * cfg.sample_rate) for p in pick]
    dev = [d for d in dev if d.shape[0] >= cfg.sample_rate]
    seconds = sum(s.shape[-1] for s in signals) / cfg.sample_rate
    return Data(sampler, dev, seconds, len(train_files))


def build_model(cfg: TrainConfig, sampler: PacketSampler, framing: Framing
                ) -> tuple[Cascade, CascadeConfig]:
    """A new cascade for ``cfg``: from ``--init-from`` (copies of its stages), or fresh with
    the LSF quantizer centred on the data."""
    mcfg = NWCConfig(**cfg.model)
    mcfg.frame = framing.frame
    rates = cfg.rates
    ccfg = CascadeConfig(nwc=mcfg, stages=len(rates), lpc=cfg.lpc, res_scale=cfg.res_scale)
    if cfg.init_from:
        src = load_path(Path(cfg.init_from).with_suffix(".json"))
        if src.lpc != cfg.lpc or src.layers > len(rates):
            raise ConfigError(f"--init-from tier has {src.layers} layer(s), lpc={src.lpc}: "
                              "it must match --lpc and have at most as many layers")
        ccfg = CascadeConfig(nwc=src.config.nwc, stages=len(rates), lpc=cfg.lpc,
                             res_scale=src.config.res_scale, lsf_levels=src.config.lsf_levels)
        model = Cascade(ccfg)
        seed_from(model, src.model)
        return model, ccfg
    model = Cascade(ccfg)
    if model.lsf is not None:  # centre the LSF quantizer on the data
        with torch.no_grad():
            raw = sampler.raw_batch(64, LPC_WARM)
            fr = split_frames(lpc.preprocess(raw.astype(np.float64))[:, LPC_WARM:], framing,
                              framing.packet_frames).reshape(-1, framing.frame)
            model.lsf.mean.copy_(torch.from_numpy(
                lpc.lpc_to_lsf(lpc.lpc_analysis(fr, cfg.sample_rate)).mean(0)))
    return model, ccfg


def prior_training(cfg: TrainConfig) -> dict:
    """Steps, time and learning curve of the ``--init-from`` tier's lineage (zero without),
    so a run continued from a tier, on any machine, carries its whole history on."""
    if not cfg.init_from:
        return {"tier": None, "steps": 0, "minutes": 0.0, "cpu_minutes": 0.0, "history": []}
    src = tierfile.read(Path(cfg.init_from).with_suffix(".json"))
    t = src.meta.get("training", {})
    history = []
    for point in src.meta.get("history", []):  # older points count from their own run
        point = dict(point)
        point.setdefault("total_steps", point.get("step", 0))
        point.setdefault("total_minutes", point.get("minutes", 0.0))
        point.setdefault("total_cpu_minutes", point.get("cpu_minutes", point.get("minutes")))
        history.append(point)
    return {"tier": src.name,
            "steps": int(t.get("total_steps", t.get("steps", 0))),
            "minutes": float(t.get("total_minutes", t.get("minutes", 0.0))),
            "cpu_minutes": float(t.get("total_cpu_minutes", t.get("cpu_minutes",
                                                                   t.get("minutes", 0.0)))),
            "history": history}


@contextlib.contextmanager
def deferred_signals() -> Iterator[list[int]]:
    """Hold SIGINT/SIGTERM/SIGHUP back while the block runs: each is recorded in the yielded
    list (the loop checks it between steps) instead of interrupting a half-applied
    optimizer step. Only in the main thread (elsewhere signals cannot be caught)."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    sigs = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP")
                                              else [])
    old = {s: signal.getsignal(s) for s in sigs}
    for s in sigs:
        if old[s] is not signal.SIG_IGN:
            signal.signal(s, lambda signum, _frame: caught.append(signum))
    try:
        yield caught
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class Stopped(KeyboardInterrupt):
    """The run was asked to stop (a signal) and has written its checkpoint."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Trainer:
    """One run: set up from a ``TrainConfig`` (resuming its run folder if asked), then
    ``run()`` steps until the step or time budget is spent."""

    def __init__(self, cfg: TrainConfig, progress: bool = True) -> None:
        cfg.check()
        self.cfg = cfg
        self.weights = cfg.weights  # the objective's term weights, fixed for the run
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = self._init_process()
        self.framing = Framing(packet_frames=cfg.packet_frames)
        self.out_path = Path(cfg.out)
        self.name = cfg.name or self.out_path.name
        self.run_dir = Path(cfg.run_dir) if cfg.run_dir \
            else self.out_path.parent / f".{self.out_path.name}.run"
        t0 = time.time()
        self.data = load_data(cfg, self.framing, self.rank)
        if self.rank == 0:
            _log(f"data: {self.data.files} train files ({self.data.train_seconds / 60:.1f} min), "
                 f"{len(self.data.dev)} dev clips, loaded in {time.time() - t0:.0f} s")
        self.model, self.ccfg = build_model(cfg, self.data.sampler, self.framing)
        self.fast = kernels.use_fast_kernels(cfg.kernels, self.device)
        self.amp = kernels.autocast_dtype(cfg.precision, self.device)
        self._setup_optimizer()
        self._setup_rate()
        self.step_count, self.elapsed, self.cpu_seconds = 0, 0.0, 0.0
        self.history: list[dict] = []
        self.prior = prior_training(cfg)  # what the --init-from tier had already trained
        self.bad_steps = 0  # consecutive steps dropped for non-finite gradients
        self._last_eval = self._last_ckpt = 0.0  # wall clock of the last evaluation/checkpoint
        if cfg.resume and checkpoint.exists(self.run_dir):
            self._resume()
        self.bar = None
        if self.rank == 0 and progress:
            from tqdm import tqdm
            self.bar = tqdm(total=cfg.max_steps or None, initial=self.step_count,
                            file=sys.stderr, unit="step", dynamic_ncols=True, mininterval=2.0)

    def _init_process(self) -> torch.device:
        device = _device(self.cfg.device)
        if self.world > 1:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            if device.type == "cuda":
                device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        # Subnormal floats take a slow path on x86 (tens of times slower per operation);
        # weights and Adam moments decaying toward zero over a long run would otherwise
        # slow every step. Flushing them to zero changes no result that matters.
        torch.set_flush_denormal(True)
        torch.manual_seed(self.cfg.seed + self.rank)
        return device

    def _setup_optimizer(self) -> None:
        model = self.model
        self.frozen = min(self.cfg.freeze, len(self.cfg.rates) - 1)
        for k in range(self.frozen):
            model.stages[k].requires_grad_(False)
        if self.frozen and model.lsf is not None:
            model.lsf.requires_grad_(False)
        model.to(self.device)
        self.net: torch.nn.Module = model
        if self.world > 1:
            # The quantizer's parameters get no gradient during warm-up (no quantization, no
            # rate term), which plain DDP rejects.
            self.net = torch.nn.parallel.DistributedDataParallel(model,
                                                                 find_unused_parameters=True)
        self.opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                                    lr=self.cfg.lr)

    def _setup_rate(self) -> None:
        cfg, f = self.cfg, self.framing
        self.n_layers = len(cfg.rates)
        self.ctrls = [rate.RateController() for _ in range(self.n_layers)]
        self.rate_fix = [1.0] * self.n_layers  # real coded / estimated bits, last evaluation
        self.side_bps = GAIN_BITS * cfg.sample_rate / f.packet_hop
        self.sym_per_frame = self.model.code_steps * self.model.symbol_channels
        self.sym_per_s = self.sym_per_frame * cfg.sample_rate / f.hop
        try:
            self.targets = rate.layer_targets(cfg.rates, self.side_bps, self.sym_per_s)
        except ValueError as e:
            raise ConfigError(str(e)) from None

    def _state(self) -> dict:
        return {"step": self.step_count, "elapsed": self.elapsed,
                "cpu_seconds": self.cpu_seconds, "ctrl": [c.state() for c in self.ctrls],
                "rate_fix": self.rate_fix, "history": self.history, "prior": self.prior,
                "sampler_rng": self.data.sampler.rng.bit_generator.state}

    def _resume(self) -> None:
        st = checkpoint.load(self.run_dir, self.model, self.opt)
        self.step_count, self.elapsed = st["step"], st["elapsed"]
        self.cpu_seconds = st.get("cpu_seconds", self.elapsed)
        for c, s in zip(self.ctrls, st["ctrl"], strict=False):
            c.load(s)
        self.rate_fix = st["rate_fix"]
        self.history = st.get("history", [])
        self.prior = st.get("prior", self.prior)
        if "sampler_rng" in st:
            self.data.sampler.rng.bit_generator.state = st["sampler_rng"]
        if self.rank == 0:
            _log(f"resumed {self.run_dir} at step {self.step_count} "
                 f"({self.elapsed / 60:.1f} min)")

    def checkpoint(self) -> None:
        checkpoint.save(self.run_dir, self.model, self.opt, self._state())

    def progress(self) -> float:
        """Fraction of the step or time budget spent (the larger), 0..1."""
        parts = []
        if self.cfg.max_steps:
            parts.append(self.step_count / self.cfg.max_steps)
        if self.cfg.max_minutes:
            parts.append(self.elapsed / 60 / self.cfg.max_minutes)
        if self.cfg.max_cpu_minutes:
            parts.append(self.cpu_seconds / 60 / self.cfg.max_cpu_minutes)
        return min(1.0, max(parts)) if parts else 0.0

    def done(self) -> bool:
        cfg = self.cfg
        return bool((cfg.max_steps and self.step_count >= cfg.max_steps)
                    or ((cfg.max_minutes or cfg.max_cpu_minutes) and self.progress() >= 1.0))

    def _loss(self, batch: Batch, out: StageOutput, quantize: bool
              ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(total loss, top layer's distortion, each layer's differentiable bits)."""
        cfg, f = self.cfg, self.framing
        loss = batch.x.new_zeros(())
        dist_loss = batch.x.new_zeros(())
        for k in range(self.frozen, self.n_layers):
            rec = overlap_add(out.recs[k].reshape(cfg.batch, -1, f.frame), f)
            dist_loss = distortion(Pair(batch.decoded(rec), batch.ref), self.weights)
            loss = loss + dist_loss
        layer_bits = list(out.bits)
        if batch.lpc is not None:
            # LSF bits per frame, in units of the base stage's symbols.
            layer_bits[0] = layer_bits[0] + batch.lpc.lsf_bits * lpc.ORDER / self.sym_per_frame
            if not self.frozen:
                loss = loss + cfg.w_lsd * batch.lpc.lsd
        if quantize:
            for k in range(self.frozen, self.n_layers):
                loss = loss + self.ctrls[k].lam * layer_bits[k]
            loss = loss + cfg.w_penalty * out.penalty
        return loss, dist_loss, layer_bits

    def _hard_bits(self, batch: Batch, out: StageOutput) -> torch.Tensor:
        """Each layer's hard bits per symbol in this batch (averaged over DDP ranks)."""
        with torch.no_grad():
            stages = self.model.nwc_stages
            hard = torch.stack([stages[k].quantizer.hard_bits(out.latents[k].detach())
                                for k in range(self.n_layers)])
            if batch.lpc is not None and self.model.lsf is not None:
                hard[0] += self.model.lsf.hard_bits(batch.lpc.lsf) * lpc.ORDER \
                    / self.sym_per_frame
        if self.world > 1:
            dist.all_reduce(hard)
            hard = hard / self.world
        return hard

    def step(self) -> bool:
        """One optimisation step; False when it was dropped (non-finite gradients)."""
        cfg, f = self.cfg, self.framing
        p = self.progress()
        quantize = self.step_count >= cfg.warmup_steps
        if cfg.schedule != "cosine":  # the ramp by steps: the budget may grow run after run
            ramp, frac = min(1.0, self.step_count / max(1, cfg.ramp_steps)), 1.0
        else:
            ramp, frac = p, cfg.ramp_fraction
        goal = rate.goals(self.targets, self.rate_fix, ramp, frac, cfg.ramp_start)
        for g in self.opt.param_groups:
            g["lr"] = rate.learning_rate(p, cfg.lr, cfg.lr_final, cfg.schedule,
                                         self.step_count, cfg.cycle_steps)
        sampler = self.data.sampler
        batch = make_batch(self.model, sampler.raw_batch(cfg.batch, LPC_WARM), f,
                           cfg.sample_rate, quantize, self.device, sampler.last_codes)
        frames = batch.x.unfold(1, f.frame, f.hop).reshape(-1, f.frame)
        with kernels.autocast(self.device, self.amp):  # the stages only: losses in fp32
            out = self.net(frames, quantize, fast=self.fast)
        loss, dist_loss, _ = self._loss(batch, out, quantize)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        if not torch.isfinite(norm):
            # One exploding batch would poison the weights, Adam's moments and the rate
            # controllers for good (a new stage did, at step ~600): drop the step. The norm is
            # of the all-reduced gradients, so every DDP rank drops the same steps.
            self.bad_steps += 1
            if self.bad_steps > MAX_BAD_STEPS:
                raise RuntimeError(f"{self.bad_steps} non-finite steps in a row: lower --lr")
            return False
        self.bad_steps = 0
        self.opt.step()
        hard = self._hard_bits(batch, out)
        if quantize:
            for k in range(self.frozen, self.n_layers):
                self.ctrls[k].update(float(hard[k]), goal[k])
        self.step_count += 1
        self._show(dist_loss, hard, batch)
        return True

    def _show(self, dist_loss: torch.Tensor, hard: torch.Tensor, batch: Batch) -> None:
        if self.bar is None:
            return
        kbps = (sum(float(h) * fix for h, fix in zip(hard, self.rate_fix, strict=False))
                * self.sym_per_s + self.side_bps) / 1000
        post = {"loss": f"{float(dist_loss.detach()):.3f}",
                "bits": "/".join(f"{float(h):.2f}" for h in hard), "kbps": f"{kbps:.1f}",
                "lam": "/".join(f"{c.lam:.2g}" for c in self.ctrls)}
        if batch.lpc is not None:
            post["lsd"] = f"{float(batch.lpc.lsd.detach()) ** 0.5:.2f}dB"
        self.bar.update(1)
        self.bar.set_postfix(post, refresh=False)

    def export(self, metrics: list[dict] | None = None) -> Tier:
        """The tier of the current weights, with fresh code tables and dev scores."""
        cfg, model = self.cfg, self.model
        model.eval()
        tables, lsf_tables = code_tables(model, self.data.sampler, self.device,
                                         cfg.sample_rate)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        t = build(self.name, cfg.sample_rate, self.framing, self.ccfg, tables, state=state,
                  lsf_tables=lsf_tables)
        if metrics is None and self.data.dev:
            metrics = evaluate(t, self.data.dev)
        t.meta.update({
            "target_kbps": cfg.rates[-1] / 1000,
            "target_layer_kbps": [r / 1000 for r in cfg.rates],
            "dev": (metrics or [{}])[-1],
            "dev_layers": metrics or [],
            "parameters": parameter_counts(model),
            "training": {"steps": self.step_count, "minutes": round(self.elapsed / 60, 1),
                         "cpu_minutes": round(self.cpu_seconds / 60, 1), **self._totals(),
                         "init_from": self.prior.get("tier"),
                         "cpu_threads": cfg.threads, "world_size": self.world,
                         "device": str(self.device), "data": str(cfg.data),
                         "train_minutes_of_audio": round(self.data.train_seconds / 60, 1),
                         "loss_weights": self.weights, "config": asdict(cfg)},
        })
        model.train()
        return t

    def evaluate(self) -> None:
        """Score the dev clips, correct each layer's rate estimate by the real coded rate,
        record the point in the history and write the tier."""
        t = self.export()
        ms = t.meta["dev_layers"]
        lo = 0.0
        for k, m in enumerate(ms):
            if k >= self.frozen:
                est = float(self.ctrls[k].ema or 0.0) * self.sym_per_s
                real = m["kbps"] * 1000 - lo - (self.side_bps if k == 0 else 0.0)
                self.rate_fix[k] = float(np.clip(real / max(est, 1.0), 0.5, 2.0))
            lo = m["kbps"] * 1000
        self.history.append(self._point(ms))
        _log(f"[eval] step {self.step_count} {self.elapsed / 60:.1f} min: {json.dumps(ms)}")
        t.save(self.out_path, {"history": self.history})

    def _totals(self) -> dict:
        """This run's steps and time plus the lineage's before it."""
        return {"total_steps": self.prior["steps"] + self.step_count,
                "total_minutes": round(self.prior["minutes"] + self.elapsed / 60, 1),
                "total_cpu_minutes": round(self.prior["cpu_minutes"] + self.cpu_seconds / 60, 1)}

    def _point(self, layers: list[dict]) -> dict:
        return {"step": self.step_count, "minutes": round(self.elapsed / 60, 1),
                "cpu_minutes": round(self.cpu_seconds / 60, 1), **self._totals(),
                "layers": layers}

    def run(self) -> Tier | None:
        """Train until the budget is spent; returns the exported tier on rank 0. A SIGINT,
        SIGTERM or SIGHUP ends the current step, writes a checkpoint and raises ``Stopped``."""
        self._last_eval = self._last_ckpt = time.time()
        start_wall = time.time() - self.elapsed
        cpu0 = time.process_time() - self.cpu_seconds
        with deferred_signals() as caught:
            while not self.done():
                stepped = self.step()
                self.elapsed = time.time() - start_wall
                self.cpu_seconds = time.process_time() - cpu0
                if caught:  # a whole step is done: checkpoint it and leave
                    self._stop(caught[0])
                if stepped and self.rank == 0:
                    self._periodic()
        return self._finish()

    def _stop(self, signum: int) -> None:
        """Write the checkpoint of the last whole step and leave (exit 128 + signal)."""
        if self.bar is not None:
            self.bar.close()
        if self.rank == 0:
            self.checkpoint()
            _log(f"stopped by {signal.Signals(signum).name} at step {self.step_count}: "
                 f"checkpoint in {self.run_dir} (continue with --resume)")
        raise Stopped(signum)

    def _periodic(self) -> None:
        """Evaluate and checkpoint when their intervals have passed (rank 0)."""
        cfg, now = self.cfg, time.time()
        if self.step_count >= cfg.warmup_steps and self.data.dev \
                and now - self._last_eval > cfg.eval_minutes * 60:
            self.evaluate()
            self._last_eval = time.time()
        if now - self._last_ckpt > cfg.checkpoint_minutes * 60:
            self.checkpoint()
            self._last_ckpt = time.time()

    def _finish(self) -> Tier | None:
        if self.bar is not None:
            self.bar.close()
        tier = None
        if self.rank == 0:
            self.checkpoint()  # before the export, which draws from the sampler's RNG
            tier = self.export()
            # The final evaluation joins the run's own history too, so a resumed run's
            # learning curve (and ckpt.json) keeps the point its tier was exported at.
            if not self.history or self.history[-1]["step"] != self.step_count:
                self.history.append(self._point(tier.meta["dev_layers"]))
                checkpoint.set_history(self.run_dir, self.history)
            tier.meta["history"] = self.prior["history"] + self.history
            tier.save(self.out_path)
            _log(f"wrote {self.out_path}.safetensors / .json: "
                 f"{json.dumps(tier.meta['dev_layers'])}")
        if self.world > 1:
            dist.barrier()
            dist.destroy_process_group()
        return tier


def train(cfg: TrainConfig, progress: bool = True) -> Tier | None:
    """Run training; returns the exported tier on rank 0 (None on other ranks)."""
    return Trainer(cfg, progress).run()
