"""``nwc tiers``: the installed tiers with their measured bitrate and quality, and
``--history``, a tier's learning curve (``--plot``: drawn to a PNG). The tiers' JSON files
only: no torch."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from .common import Fatal, debug_option, force_option, handle_errors

if TYPE_CHECKING:  # tier files are read where they are used
    from ..codec.tierfile import TierFile


@click.command("tiers")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--history", metavar="TIER",
              help="The tier's learning curve: each dev evaluation of its whole lineage.")
@click.option("--plot", type=click.Path(dir_okay=False),
              help="With --history: draw the curve (dev score and kbps per layer prefix "
                   "against cumulative CPU hours) to this PNG (needs matplotlib).")
@force_option
@debug_option
@handle_errors
def tiers_cmd(as_json, history, plot, force, debug) -> None:
    """List installed tiers with their measured real bitrate and quality."""
    from ..codec import catalog, choose, tierfile

    if plot and not history:
        raise click.UsageError("--plot draws a learning curve: give --history TIER")
    if history:
        t = choose.load_tier_arg(history)
        if plot:
            _plot_history(t, plot, force)
        _show_history(t, as_json)
        return
    rows = [tierfile.read(path).summary() for _, path in sorted(catalog.available().items())]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo("no tiers installed", err=True)
        return

    def num(v, f):
        return f"{v:{f}}" if isinstance(v, (int, float)) else f"{'-':>{int(float(f[:-1]))}}"

    # Speech tiers report PESQ-WB and STOI; general-audio tiers ViSQOL (audio) and SI-SNR.
    cols = (("kbps", "8.2f"), ("pesq_wb", "9.2f"), ("stoi", "7.3f"), ("visqol", "8.2f"),
            ("si_snr", "8.1f"))
    click.echo(f"{'tier':<16}{'rate':>7}{'kbps':>8}{'PESQ-WB':>9}{'STOI':>7}{'ViSQOL':>8}"
               f"{'SI-SNR':>8}")
    for r in rows:
        click.echo(f"{r['name']:<16}{r['sample_rate']:>7}"
                   + "".join(num(r[k], f) for k, f in cols) + ("  (LPC)" if r["lpc"] else ""))
        if len(r["layers"]) > 1:  # every prefix of a layered tier is a rung
            for k, m in enumerate(r["layers"], 1):
                click.echo(f"{'  ' + str(k) + ' layer(s)':<23}"
                           + "".join(num(m[c], f) for c, f in cols))


def _show_history(t: TierFile, as_json: bool) -> None:
    """Cumulative steps and CPU minutes against each layer prefix's dev scores."""
    curve = t.learning_curve()
    if as_json:
        click.echo(json.dumps(curve, indent=1))
        return
    if not curve:
        raise Fatal(f"tier {t.name} records no training history")
    metric = "pesq_wb" if t.sample_rate == 16000 else "visqol"
    click.echo(f"{t.name}: dev {metric} and kbps per layer prefix")
    click.echo(f"{'steps':>8}{'CPU min':>9}  " + "  ".join(
        f"{'L' + str(k + 1) + ' kbps':>9}{metric:>9}" for k in range(t.layers)))
    for row in curve:
        cells = "  ".join(f"{m.get('kbps') or 0:>9.2f}{m.get(metric) or 0:>9.2f}"
                          for m in row["layers"])
        cpu = row["cpu_minutes"]
        click.echo(f"{row['steps'] or 0:>8}{cpu if cpu is not None else 0:>9.1f}  {cells}")


def _plot_history(t: TierFile, path: str, force: bool) -> None:
    """Two panels over cumulative CPU hours: each layer prefix's dev score, and its kbps."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise Fatal('--plot needs matplotlib: pip install "nwc[eval]"') from None
    from .audio_io import AtomicOutput

    curve = t.learning_curve()
    if not curve:
        raise Fatal(f"tier {t.name} records no training history")
    sink = AtomicOutput(path, force)
    sink.check()
    metric = "pesq_wb" if t.sample_rate == 16000 else "visqol"
    hours = [(row["cpu_minutes"] or 0.0) / 60 for row in curve]
    fig = Figure(figsize=(8, 6), layout="constrained")
    FigureCanvasAgg(fig)
    score, rate = fig.subplots(2, 1, sharex=True)
    for k in range(max(len(row["layers"]) for row in curve)):
        pts = [(h, row["layers"][k]) for h, row in zip(hours, curve, strict=True)
               if k < len(row["layers"])]
        for ax, key in ((score, metric), (rate, "kbps")):
            xy = [(h, m[key]) for h, m in pts if isinstance(m.get(key), (int, float))]
            if xy:
                ax.plot(*zip(*xy, strict=True), marker="o", label=f"L{k + 1}")
    score.set_ylabel(f"dev {metric}")
    rate.set_ylabel("dev kbps")
    rate.set_xlabel("cumulative CPU hours")
    score.legend(fontsize=8)
    score.set_title(f"{t.name}: learning curve", fontsize=11)
    with sink as out:
        fig.savefig(out, format="png", dpi=100)
