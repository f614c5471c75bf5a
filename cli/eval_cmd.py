"""``nwc eval``: objective quality of a decoded file (or an .nwc stream) against its reference.

I/O and presentation only: reading both inputs (an .nwc stream is decoded in-process and its
real bitrate measured), the text/JSON report and the spectrogram plot. Alignment and the
metrics are in ``nwc.evaluation.metrics``; ``nwc encode --verify`` prints the same report.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np

from ..evaluation import metrics
from ..formats import container as fmt
from .audio_io import AtomicOutput, InputError, open_audio
from .common import Fatal, debug_option, force_option, handle_errors

LABELS = {"pesq_wb": "PESQ-WB", "stoi": "STOI", "visqol": "ViSQOL"}
DIGITS = {"pesq_wb": 2, "stoi": 3, "visqol": 2}


@dataclass
class Loaded:
    """One input: samples (frames, channels) at ``rate``, and what an .nwc stream adds."""

    path: str
    pcm: np.ndarray
    rate: int
    nwc: dict = field(default_factory=dict)  # tier, coded_rate, bytes, kbps, damage

    def describe(self) -> dict:
        d = {"path": self.path, "rate": self.rate, "channels": int(self.pcm.shape[1]),
             "duration_s": self.pcm.shape[0] / self.rate}
        if self.nwc:
            d["nwc"] = self.nwc
        return d


def is_nwc(path: str) -> bool:
    """True when the file starts with the .nwc magic (whatever its name)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(fmt.MAGIC)) == fmt.MAGIC
    except OSError:
        return False


def decode_nwc(path: str) -> Loaded:
    """Decode an .nwc file in-process at its original rate; real kbps = file bytes x 8 / s."""
    from ..codec import engine
    from ..codec.api import StreamDecoder

    with open(path, "rb") as f:
        reader = fmt.ContainerReader(f)
        h = reader.header
        t = engine.load_numpy(h.tier, h.weights_hash)  # the NumPy engine: no torch
        dec = StreamDecoder(t, h)
        parts = [dec.push(item) for item in reader]
        parts.append(dec.finish())
    pcm = np.concatenate(parts)
    pcm = pcm[: pcm.shape[0] - dec.stats.cut]  # an END shorter than the audio cuts it
    nbytes = os.path.getsize(path)
    secs = pcm.shape[0] / h.original_rate
    st = dec.stats
    return Loaded(path, pcm, h.original_rate, {
        "tier": t.name, "coded_rate": t.sample_rate, "bytes": nbytes,
        "kbps": 8 * nbytes / secs / 1000 if secs else None,
        "damaged": st.damaged, "lost_s": st.lost_samples / t.sample_rate, "ended": st.ended})


def load(path: str) -> Loaded:
    """Read any file soundfile reads, or decode an .nwc stream."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if is_nwc(path):
        return decode_nwc(path)
    src = open_audio(path)
    blocks = list(src.blocks)
    pcm = np.concatenate(blocks) if blocks else np.zeros((0, src.channels), np.float32)
    return Loaded(path, pcm, src.rate)


def compare(ref: Loaded, deg: Loaded, mode: str = "auto") -> tuple[dict, metrics.Alignment]:
    """Mono mixdown, degraded resampled to the reference rate, then align and measure."""
    if ref.pcm.shape[0] == 0 or deg.pcm.shape[0] == 0:
        raise Fatal(f"{ref.path if ref.pcm.shape[0] == 0 else deg.path}: no audio to compare")
    if mode == "auto" and deg.nwc.get("coded_rate", math.inf) <= 24000:
        mode = "speech"  # coded by a speech tier: judge it as speech whatever the file rate
    r = metrics.mono(ref.pcm)
    d = metrics.resample(metrics.mono(deg.pcm), deg.rate, ref.rate)
    rep, al = metrics.evaluate(r, d, ref.rate, mode)
    out = {"reference": ref.describe(), "degraded": deg.describe(),
           "mode": metrics.pick_mode(mode, ref.rate), **rep,
           "bitrate_kbps": deg.nwc.get("kbps")}
    return out, al


def _num(v: float | None, digits: int) -> str:
    if v is None:
        return "-"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return "n/a" if math.isnan(v) else f"{v:.{digits}f}"


def format_report(rep: dict) -> list[str]:
    """The text table: inputs, alignment, one metric a line."""

    def side(d: dict) -> str:
        s = f"{d['path']}: {d['rate']} Hz, {d['channels']} ch, {d['duration_s']:.3f} s"
        n = d.get("nwc")
        if n:
            s += f" (.nwc, tier {n['tier']}, {n['bytes']} bytes)"
            if n["damaged"] or n["lost_s"] or not n["ended"]:
                s += (f"; damaged: {n['damaged']} stretch(es), {n['lost_s']:.2f} s lost"
                      + ("" if n["ended"] else ", no end packet"))
        return s

    lines = [
        f"{'reference':<12}{side(rep['reference'])}",
        f"{'degraded':<12}{side(rep['degraded'])}",
        f"{'alignment':<12}delay {rep['delay_samples']:+.2f} samples ({rep['delay_ms']:+.3f} ms) "
        f"at {rep['rate']} Hz, {rep['alignment']}, correlation {rep['correlation']:.3f}, "
        f"{rep['compared_s']:.3f} s compared",
    ]
    for m in metrics.METRICS:
        note = ""
        if m in rep["skipped"]:
            note = f"skipped: {rep['skipped'][m]}"
        elif m == "visqol":
            note = metrics.visqol_description(rep["visqol_mode"], rep["visqol_rate"],
                                              rep["visqol_mapper"])
        lines.append(f"{LABELS[m]:<12}{_num(rep[m], DIGITS[m]):<8}{note}".rstrip())
    lines.append(f"{'SI-SNR':<12}{_num(rep['si_snr_db'], 2)} dB")
    if rep.get("bitrate_kbps") is not None:
        lines.append(f"{'bitrate':<12}{rep['bitrate_kbps']:.2f} kbps (real: file bytes x 8 / "
                     "duration)")
    return lines


def _finite(o: object) -> object:
    """JSON has no inf/nan: they become null (text output shows them)."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def write_plot(sink: AtomicOutput, al: metrics.Alignment, rate: int, rep: dict) -> None:
    """Spectrograms of the aligned reference and degraded signals and their difference (PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    f, t, s_ref = metrics.spectrogram_db(al.ref, rate)
    _, _, s_deg = metrics.spectrogram_db(al.deg, rate)
    top = float(max(s_ref.max(), s_deg.max()))
    # Both floored 90 dB down, so silence against silence shows no difference.
    s_ref, s_deg = np.maximum(s_ref, top - 90), np.maximum(s_deg, top - 90)
    extent = (0.0, float(t[-1] + t[0]), 0.0, float(f[-1]) / 1000)
    fig = Figure(figsize=(10, 8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, 1, sharex=True)
    panels = [("reference", s_ref, "magma", (top - 90, top), "dB"),
              ("degraded (aligned)", s_deg, "magma", (top - 90, top), "dB"),
              ("degraded - reference", np.clip(s_deg - s_ref, -30, 30), "RdBu_r", (-30, 30),
               "dB")]
    for ax, (title, s, cmap, (lo, hi), unit) in zip(axes, panels, strict=True):
        im = ax.imshow(s, origin="lower", aspect="auto", extent=extent, cmap=cmap, vmin=lo,
                       vmax=hi, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("kHz")
        fig.colorbar(im, ax=ax, label=unit)
    axes[-1].set_xlabel("seconds")
    summary = ", ".join(f"{LABELS[m]} {_num(rep[m], DIGITS[m])}" for m in metrics.METRICS
                        if rep[m] is not None)
    fig.suptitle(f"{Path(rep['degraded']['path']).name} vs {Path(rep['reference']['path']).name}"
                 f": {summary + ', ' if summary else ''}SI-SNR {_num(rep['si_snr_db'], 1)} dB",
                 fontsize=11)
    with sink as out:
        fig.savefig(out, format="png", dpi=100)


@click.command("eval")
@click.argument("reference")
@click.argument("degraded")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--plot", type=click.Path(dir_okay=False),
              help="Write spectrograms of both signals and their difference to this PNG.")
@click.option("--mode", type=click.Choice(["auto", "speech", "audio"]), default="auto",
              show_default=True, help="ViSQOL mode: speech (16 kHz) or audio (48 kHz); auto "
              "picks speech for references up to 24 kHz and .nwc from speech tiers.")
@force_option
@debug_option
@handle_errors
def eval_command(reference, degraded, as_json, plot, mode, force, debug) -> None:
    """Compare DEGRADED (audio, or an .nwc stream, decoded here) with REFERENCE.

    Aligns the two (sub-sample delay), then reports PESQ-WB, STOI, ViSQOL, SI-SNR and, for an
    .nwc stream, its real bitrate. Needs the metric packages: pip install "nwc[eval]".
    """
    missing = metrics.missing_packages()
    if len(missing) == len(metrics.METRICS):
        raise Fatal(f"eval needs the metric packages {', '.join(missing.values())}: "
                    f"{metrics.EXTRA_HINT}")
    sink = None
    if plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise Fatal(f"--plot needs matplotlib: {metrics.EXTRA_HINT}") from None
        sink = AtomicOutput(plot, force)
        sink.check()
    if is_nwc(degraded):
        from ..codec.engine import blas_threads

        blas_threads(1)  # the CLI's default elsewhere (--threads 1)
    rep, al = compare(load(reference), load(degraded), mode)
    if sink is not None:
        write_plot(sink, al, rep["rate"], rep)
    if as_json:
        click.echo(json.dumps(_finite(rep), indent=1))
        for m, why in rep["skipped"].items():  # the text table shows these in its rows
            click.echo(f"nwc: warning: {LABELS[m]} skipped: {why}", err=True)
    else:
        click.echo("\n".join(format_report(rep)))


def verify_written(path: str, ref_pcm: np.ndarray, rate: int) -> None:
    """``encode --verify``: decode the file just written and print the report on stderr."""
    deg = decode_nwc(path)
    n = deg.nwc
    if n["damaged"] or n["lost_s"] or not n["ended"]:
        raise Fatal(f"verify: {path} does not decode cleanly ({n['damaged']} damaged "
                    f"stretch(es), {n['lost_s']:.2f} s lost)")
    if deg.pcm.shape[0] != ref_pcm.shape[0]:
        raise Fatal(f"verify: {path} decodes to {deg.pcm.shape[0]} samples, "
                    f"expected {ref_pcm.shape[0]}")
    if ref_pcm.shape[0] == 0:
        click.echo(f"nwc: verify: {path} decodes to the same 0 samples", err=True)
        return
    rep, _ = compare(Loaded("input", ref_pcm, rate), deg)
    click.echo(f"nwc: verify: decoded {path} again, compared with the input:", err=True)
    for line in format_report(rep):
        click.echo(f"  {line}", err=True)
