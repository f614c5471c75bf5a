"""``nwc train``: the command line of ``nwc.train`` (options into a ``TrainConfig``).

Arguments only: data, objective, schedule and export live in ``train/``; this module turns
options into a checked config and reports, after ``--init-from``, where the run started.
"""

from __future__ import annotations

from pathlib import Path

import click

from .batch import AUDIO_SUFFIXES
from .common import Fatal, debug_option, handle_errors, kbps_arg, quiet_option

# The objective's term names (``nwc.train.objective.TERMS``, which imports torch), for --help.
LOSS_TERMS = ("time", "mel", "pw", "nmr", "asym", "segtime", "pesqd", "wspec")


@click.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, help="Output stem: writes OUT.safetensors and OUT.json.")
@click.option("-b", "--bitrate", default="16k", show_default=True,
              help="Target real bitrate in kbit/s; a list (8,16,24) trains one layer per "
                   "rate.")
@click.option("--lpc", is_flag=True, help="Hybrid codec: an LPC front end before the stages.")
@click.option("--sample-rate", type=click.IntRange(8000, 96000), default=16000,
              show_default=True, help="Rate the tier codes at (44100 for music).")
@click.option("--loss", type=click.Choice(["plain", "psychoacoustic"]), default="plain",
              show_default=True,
              help="Objective preset; psychoacoustic adds the MPEG-1 masking-threshold terms "
                   "(general audio).")
@click.option("--loss-weight", "loss_weights", multiple=True, metavar="TERM=W",
              help=f"Override one term's weight ({', '.join(LOSS_TERMS)}); repeatable.")
@click.option("--stereo-data", type=click.Choice(["mix", "coded"]), default="mix",
              show_default=True,
              help="Stereo files as mono mixes, or as the channels the encoder codes (L/R, "
                   "or M and S with S at its real level, per packet as --stereo auto).")
@click.option("--harp", type=click.IntRange(0, 64), default=0, show_default=True,
              help="HARP-Net skip code channels (0: plain autoencoder).")
@click.option("--freeze", type=click.IntRange(0, 64), default=0, show_default=True,
              help="Keep the first N stages (and the LPC) fixed: add layers on top of a tier "
                   "given with --init-from.")
@click.option("--name", help="Tier name (default: OUT's file name).")
@click.option("--resume", is_flag=True, help="Continue from the run folder's checkpoint.")
@click.option("--init-from", type=click.Path(), help="Start from an existing tier (its .json).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--max-steps", type=int, default=0, help="Stop after this many steps.")
@click.option("--max-minutes", type=float, default=0.0,
              help="Stop after this much wall-clock time (the run's total, across resumes).")
@click.option("--max-cpu-minutes", type=float, default=0.0,
              help="Stop after this much process CPU time (the run's total, across resumes): "
                   "the budget for comparing recipes at equal compute.")
@click.option("--quantizer", type=click.Choice(["noise", "softmax"]), default="noise",
              show_default=True,
              help="noise: additive-noise proxy and rounding; softmax: soft-to-hard centroids.")
@click.option("--plan", type=click.Choice(["fast", "paper"]), default="fast", show_default=True,
              help="Layer plan: fast (learned stride-8 filterbank) or the papers' layout.")
@click.option("--channels", type=int, default=128, show_default=True,
              help="Width of the model's convolutions.")
@click.option("--code-channels", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Code channels per frame (symbols per frame = code channels x steps).")
@click.option("--batch", type=int, default=8, show_default=True, help="Packets per step.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--warmup-steps", type=int, default=200, show_default=True,
              help="Steps before the rate term starts (reconstruction only).")
@click.option("--schedule", type=click.Choice(["cosine", "open", "restarts"]),
              default="cosine", show_default=True,
              help="cosine: learning rate and rate target follow the step/time budget; open: "
                   "constant learning rate, rate ramp over --ramp-steps (a run resumed again "
                   "and again); restarts: as open, but the learning rate falls from --lr to "
                   "--lr-final in a cosine every --cycle-steps steps (warm restarts).")
@click.option("--ramp-steps", type=click.IntRange(1), default=2000, show_default=True,
              help="Steps over which the rate target falls (--schedule open/restarts).")
@click.option("--cycle-steps", type=click.IntRange(1), default=10000, show_default=True,
              help="Steps of one learning-rate cycle (--schedule restarts).")
@click.option("--lr-final", type=float, default=1e-4, show_default=True,
              help="Learning rate at the end of the cosine (cosine and restarts).")
@click.option("--ramp-start", type=float, default=2.0, show_default=True,
              help="Initial rate target as a multiple of the final one.")
@click.option("--eval-minutes", type=float, default=10.0, show_default=True,
              help="Minutes between dev evaluations (each writes the tier).")
@click.option("--eval-clips", type=int, default=16, show_default=True,
              help="Dev clips coded for real at each evaluation.")
@click.option("--checkpoint-minutes", type=click.FloatRange(min=0.001), default=3.0,
              show_default=True, help="Write the resumable run state this often.")
@click.option("--threads", type=int, default=1, show_default=True,
              help="CPU threads for training.")
@click.option("--kernels", type=click.Choice(["auto", "fast", "module"]), default="auto",
              show_default=True,
              help="fast: the stages through channels-last GEMM kernels (auto on a CPU); "
                   "module: the modules' own forward (the reference).")
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]), default="auto",
              show_default=True,
              help="auto: bfloat16 autocast for the stages where the CPU or GPU has it "
                   "natively (float32 weights, quantizer and losses).")
@click.option("--run-dir", help="Checkpoint folder (default: .OUT.run beside OUT).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed (initialisation and batches).")
@quiet_option
@debug_option
@handle_errors
def train(data_dir, out, bitrate, lpc, sample_rate, loss, loss_weights, stereo_data, harp,
          freeze, name,
          resume, init_from, device, max_steps, max_minutes, max_cpu_minutes,
          quantizer, plan, channels, code_channels, batch, lr, warmup_steps, schedule,
          ramp_steps, cycle_steps, lr_final, ramp_start, eval_minutes, eval_clips,
          checkpoint_minutes, threads,
          kernels, precision, run_dir, seed, quiet, debug) -> None:
    """Train a tier on a folder of audio (files under a `dev` folder form the dev split)."""
    from ..codec.engine import torch_available

    if not torch_available():
        raise Fatal('nwc train needs torch, which this install lacks: pip install "nwc[train]"')
    from ..train.config import ConfigError, TrainConfig, model_options
    from ..train.trainer import train as run

    rates = [kbps_arg(b) * 1000 for b in bitrate.split(",")]
    if not any(p.suffix.lower() in AUDIO_SUFFIXES for p in Path(data_dir).rglob("*")):
        raise Fatal(f"{data_dir} holds no audio files (WAV, FLAC, ...); files under a `dev` "
                    "folder form the dev split")
    weights = {}
    for item in loss_weights:
        term, eq, value = item.partition("=")
        try:
            weights[term.strip()] = float(value)
        except ValueError:
            raise click.BadParameter(f"{item!r} is not TERM=WEIGHT",
                                     param_hint="--loss-weight") from None
    cfg = TrainConfig(data=data_dir, out=out, bitrate=rates[-1], layer_bitrates=rates, lpc=lpc,
                      sample_rate=sample_rate, loss=loss, loss_weights=weights,
                      freeze=freeze, name=name or "",
                      max_steps=max_steps, max_minutes=max_minutes,
                      max_cpu_minutes=max_cpu_minutes, batch=batch, lr=lr,
                      warmup_steps=warmup_steps, ramp_start=ramp_start, schedule=schedule,
                      ramp_steps=ramp_steps, cycle_steps=cycle_steps, lr_final=lr_final,
                      eval_minutes=eval_minutes, eval_clips=eval_clips, seed=seed,
                      checkpoint_minutes=checkpoint_minutes,
                      device=device, threads=threads, kernels=kernels, precision=precision,
                      resume=resume,
                      init_from=init_from or "", run_dir=run_dir or "",
                      stereo_data=stereo_data,
                      model=model_options(quantizer, plan, channels, code_channels, harp))
    try:
        cfg.check()
    except ConfigError as e:
        param = {"layer bitrates must increase": "--bitrate"}.get(str(e))
        if param:
            raise click.BadParameter(str(e), param_hint=param) from None
        raise click.UsageError(str(e)) from None
    try:
        tier = run(cfg, progress=not quiet)
    except ValueError as e:  # unusable data (no file longer than a packet, ...): one line
        raise Fatal(str(e)) from None
    if init_from and tier is not None:  # beside training's own "wrote" line, -q or not
        _compare_with_start(init_from, tier.meta.get("dev_layers") or [])


def _compare_with_start(init_from: str, now: list[dict]) -> None:
    """After --init-from, show the starting tier's dev scores beside the new ones: a short
    run scores about what it started from, which is no sign of fast training."""
    from ..codec import tierfile

    try:
        before = tierfile.read(Path(init_from).with_suffix(".json")).meta.get("dev_layers") or []
    except tierfile.TierError:
        return

    def fmt_scores(rows: list[dict]) -> str:
        key = "pesq_wb" if any("pesq_wb" in r for r in rows) else "visqol"
        vals = [r.get(key) for r in rows]
        return f"{key}: " + " / ".join(f"{v:.2f}" if isinstance(v, float) else "-" for v in vals)

    if before and now:
        click.echo(f"nwc: started from {init_from} ({fmt_scores(before)}); now "
                   f"{fmt_scores(now)}", err=True)
