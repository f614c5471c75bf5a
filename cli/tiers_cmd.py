"""``nwc tiers``: the installed tiers with their measured bitrate and quality, and
``--history``, a tier's learning curve. The tiers' JSON files only: no torch."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from .common import Fatal, debug_option, handle_errors

if TYPE_CHECKING:  # tier files are read where they are used
    from ..codec.tierfile import TierFile


@click.command("tiers")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--history", metavar="TIER",
              help="The tier's learning curve: each dev evaluation of its whole lineage.")
@debug_option
@handle_errors
def tiers_cmd(as_json, history, debug) -> None:
    """List installed tiers with their measured real bitrate and quality."""
    from ..codec import catalog, choose, tierfile

    if history:
        _show_history(choose.load_tier_arg(history), as_json)
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
