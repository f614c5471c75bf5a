"""Training throughput: audio seconds trained per CPU-second, old code against new, one run.

Each variant is ``python -m nwc train`` run twice from scratch (same data, seed and options,
one thread) for ``--steps A,B`` steps; the CPU time of the whole process is read from the
kernel (``wait4``), so the per-step cost is ``(cpu(B) - cpu(A)) / (B - A)``: loading the data,
building the model and the final export cancel out. Audio per step is the batch's packets
(8 × 16 frames: 7,712 samples each) at the tier's rate.

The old code is any other install of nwc, by its Python (``--old-python``), e.g. today's
baseline, commit 5f32663, in its own worktree and venv::

    git worktree add --detach ../wt-old 5f32663
    (cd ../wt-old && python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e .)
    python bench/train_speed.py --old-python ../wt-old/.venv/bin/python --data ../corpus
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import log, md_table

PACKET_SAMPLES = 16 * 480 + 32  # a training packet: 16 frames of hop 480 plus the overlap
BATCH = 8

#: case -> (data subfolder, sample rate, nwc train options)
CASES: dict[str, tuple[str, int, list[str]]] = {
    "lpc16": ("speech", 16000, ["--lpc", "-b", "16k"]),
    "music": ("music", 44100, ["--sample-rate", "44100", "-b", "64k"]),
}


@dataclass
class Variant:
    """One code version and how it is asked to compute."""

    name: str
    python: str
    extra: list[str]


def cpu_seconds(cmd: list[str], env: dict[str, str], cpu: int | None) -> float:
    """User + system CPU time of ``cmd`` (pinned to core ``cpu`` if given); raises on failure."""
    def pin() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env,
                                preexec_fn=pin)
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise SystemExit(f"{' '.join(cmd[:4])} ... failed: {tail[0]}")
    return usage.ru_utime + usage.ru_stime


def per_step(v: Variant, case: str, data: Path, steps: tuple[int, int], cpu: int | None,
             workdir: Path) -> float:
    """CPU seconds per training step of variant ``v`` on ``case``."""
    sub, _, opts = CASES[case]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    times = []
    for n in steps:
        out = workdir / f"{v.name.replace(' ', '_')}-{case}-{n}"
        cmd = [v.python, "-m", "nwc", "train", str(data / sub), "--out", str(out),
               "--max-steps", str(n), "--warmup-steps", "0", "--threads", "1",
               "--eval-clips", "1", "--eval-minutes", "100000", "--seed", "0", "-q",
               *opts, *v.extra]
        t0 = time.time()
        times.append(cpu_seconds(cmd, env, cpu))
        log(f"  {v.name} {case} {n} steps: {times[-1]:.1f} CPU-s ({time.time() - t0:.0f} s)")
    return (times[1] - times[0]) / (steps[1] - steps[0])


def profile_step(case: str, data: Path, steps: int, kernels: str, precision: str
                 ) -> list[list[str]]:
    """CPU milliseconds per part of one training step of this checkout (in-process, one
    thread, ``steps`` steps after 5 of warm-up), as table rows."""
    import torch
    from nwc.train import kernels as kern
    from nwc.train.config import TrainConfig
    from nwc.train.inputs import LPC_WARM, make_batch
    from nwc.train.trainer import Trainer

    sub, rate, opts = CASES[case]
    torch.set_num_threads(1)
    cfg = TrainConfig(data=str(data / sub), out=str(Path(tempfile.gettempdir()) / "nwc-prof"),
                      lpc="--lpc" in opts, bitrate=float(opts[-1].rstrip("k")) * 1000,
                      sample_rate=rate, max_steps=10 ** 6, warmup_steps=0, eval_clips=0,
                      kernels=kernels, precision=precision)
    tr = Trainer(cfg, progress=False)
    f, parts = tr.framing, {}

    def tick(name: str, t0: float) -> float:
        parts[name] = parts.get(name, 0.0) + time.process_time() - t0
        return time.process_time()

    for i in range(steps + 5):
        if i == 5:
            parts.clear()
        t = time.process_time()
        raw = tr.data.sampler.raw_batch(cfg.batch, LPC_WARM)
        t = tick("sample packets", t)
        batch = make_batch(tr.model, raw, f, rate, True, tr.device)
        t = tick("front end (gains; LPC analysis, LSF quantizer, residual)", t)
        frames = batch.x.unfold(1, f.frame, f.hop).reshape(-1, f.frame)
        with kern.autocast(tr.device, tr.amp):
            out = tr.net(frames, True, fast=tr.fast)
        t = tick("stages forward", t)
        loss, _, _ = tr._loss(batch, out, True)
        t = tick("overlap-add, LPC synthesis, loss terms", t)
        tr.opt.zero_grad(set_to_none=True)
        loss.backward()
        t = tick("backward", t)
        torch.nn.utils.clip_grad_norm_(tr.model.parameters(), 1.0)
        tr.opt.step()
        t = tick("clip + Adam", t)
        tr._hard_bits(batch, out)
        tick("hard bits (rate controller)", t)
    total = sum(parts.values())
    rows = [[k, f"{1000 * v / steps:.1f}", f"{100 * v / total:.0f} %"] for k, v in parts.items()]
    return rows + [["step", f"{1000 * total / steps:.1f}", "100 %"]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old-python",
                    help="Python of the baseline install (its own venv)")
    ap.add_argument("--data", type=Path, default=Path("../corpus"),
                    help="corpus root with speech/ and music/ (build_corpus.sh)")
    ap.add_argument("--cases", default="lpc16,music", help=f"any of {','.join(CASES)}")
    ap.add_argument("--steps", default="10,110", help="the two step counts A,B")
    ap.add_argument("--cpu", type=int, default=None, help="pin every run to this core")
    ap.add_argument("--out-md", type=Path, help="also write the table here")
    ap.add_argument("--profile", action="store_true",
                    help="instead: CPU time per part of a step of this checkout, per case, "
                         "for the reference and the default kernels")
    args = ap.parse_args(argv)
    if args.profile:
        lines = []
        for case in args.cases.split(","):
            for kernels, precision in (("module", "fp32"), ("auto", "auto")):
                lines += ["", f"{case}, --kernels {kernels} --precision {precision} "
                              "(CPU ms per step):", ""]
                lines += md_table(["part", "ms", "share"],
                                  profile_step(case, args.data, 30, kernels, precision))
        print("\n".join(lines))
        return 0
    if not args.old_python:
        ap.error("--old-python is required (unless --profile)")
    a, b = (int(s) for s in args.steps.split(","))
    new = sys.executable
    variants = [
        Variant("old", args.old_python, []),
        Variant("new, modules, fp32", new, ["--kernels", "module", "--precision", "fp32"]),
        Variant("new, fast kernels, fp32", new, ["--kernels", "fast", "--precision", "fp32"]),
        Variant("new, default", new, []),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases.split(","):
            if case not in CASES:
                raise SystemExit(f"unknown case {case!r}; use {','.join(CASES)}")
            rate = CASES[case][1]
            audio = BATCH * PACKET_SAMPLES / rate
            base = None
            for v in variants:
                s = per_step(v, case, args.data, (a, b), args.cpu, Path(tmp))
                base = base or s
                rows.append([case, v.name, f"{1000 * s:.0f}", f"{audio / s:.1f}",
                             f"{base / s:.2f}x"])
    lines = md_table(["case", "code", "CPU ms / step", "audio s per CPU-s", "vs old"], rows)
    lines += ["", f"(steps {a} and {b} from scratch, one thread, batch {BATCH} packets of "
                  f"{PACKET_SAMPLES} samples; `new, default` is the fast kernels under "
                  "`--precision auto`)"]
    print("\n".join(lines))
    if args.out_md:
        args.out_md.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
