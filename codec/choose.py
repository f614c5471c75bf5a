"""Which tier and how many layers: one policy for ``nwc encode`` and ``nwc truncate``.

A *rung* is a tier coded with its first k layers. Tiers record the real bitrate of every rung
measured on mono dev audio (container bytes included), so the rate of a whole stream is
estimated from the channels actually coded: a mono rung per channel, and for a stereo pair
coded mid/side the mid at k layers plus the side at its own depth (``stereo.py``).

``--bitrate R`` means the whole stream's real rate, as for opusenc and lame. Among the rungs
of the *family* that suits the input (the tiers whose sample rate is nearest the input's, so
16 kHz speech never lands on a 44.1 kHz music tier) it takes the best-scoring rung whose
expected rate is within R, and says so when the request cannot be met or is far from it.
Without ``--bitrate`` or ``--tier`` the family's default tier is used, so a 44.1 kHz song is
coded by the music tier, not resampled to 16 kHz. No torch: everything comes from the JSON.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from . import catalog, tierfile
from .stereo import default_side_layers
from .tierfile import TierFile

# The default tier of each family (by its sample rate), first installed wins; other families
# take their deepest tier. speech-lpc-16k scores far above speech-16k at the same rate.
DEFAULT_TIERS = ("speech-lpc-16k", "speech-16k", "music")
# Measured rates are dev-set averages: a rung up to this much over the request still fits.
FIT_SLACK = 1.03
# Below this share of the request, the closest rung is "far" and the user is told.
FAR_BELOW = 0.6
# Quality metric a family's rungs are ranked by, in order of preference.
METRICS = ("pesq_wb", "visqol")
METRIC_LABELS = {"pesq_wb": "PESQ-WB", "visqol": "ViSQOL"}

_BITRATE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(k|kb|kbps|kbit|kbit/s|b|bps|bit/s)?\s*$",
                      re.IGNORECASE)


def parse_kbps(text: str) -> float:
    """A bitrate in kbit/s: '16k', '16kbps' and a bare '16' are 16; '16000bps' is 16 too.

    A bare number means kbit/s, as for opusenc and lame. Range: 0.5 to 1000 kbit/s.
    """
    m = _BITRATE.match(text)
    if not m:
        raise ValueError(f"bitrate {text!r} is not a number of kbit/s (e.g. 16, 16k, 16kbps)")
    value, unit = float(m.group(1)), (m.group(2) or "k").lower()
    if unit in ("b", "bps", "bit/s"):
        value /= 1000
    if not 0.5 <= value <= 1000:
        hint = f"; did you mean {value / 1000:g}k?" if unit.startswith("k") and value >= 1000 \
            and not m.group(2) else ""
        raise ValueError(f"bitrate {text!r} out of range (0.5 to 1000 kbit/s){hint}")
    return value


def load_tier_arg(name_or_path: str) -> TierFile:
    """``--tier``: an installed tier's name, or the path of a tier's .json file.

    A path is made installed for this process (its folder goes first in ``NWC_WEIGHTS``), so
    the model loads by name exactly as for a shipped tier, in worker processes too.
    """
    p = Path(name_or_path)
    if name_or_path.endswith(".json") or p.is_file():
        if not p.is_file():
            raise catalog.TierError(f"tier file {name_or_path} does not exist")
        info = tierfile.read(p)
        folder = str(p.resolve().parent)
        dirs = [d for d in os.environ.get("NWC_WEIGHTS", "").split(os.pathsep) if d]
        if folder not in dirs:
            os.environ["NWC_WEIGHTS"] = os.pathsep.join([folder, *dirs])
        found = catalog.available().get(info.name)
        if found is None or found.resolve() != p.resolve():
            raise catalog.TierError(f"tier {info.name!r} in {p} is shadowed by {found}")
        return info
    return catalog.info(name_or_path)


@dataclass(frozen=True)
class Rung:
    """A tier coded with its first ``layers`` layers, and what that costs for this input."""

    tier: TierFile
    layers: int
    kbps: float | None          # expected real rate of the whole stream
    score: float | None         # the tier's dev score at this rung (higher is better)
    metric: str | None

    def describe(self) -> str:
        rate = f"about {self.kbps:.1f} kbps" if self.kbps is not None else "rate not recorded"
        return f"tier {self.tier.name}, {self.layers} of {self.tier.layers} layer(s), {rate}"


def _kbps(r: Rung) -> float:
    """A rung's expected rate, where choosing has kept only rungs that record one."""
    assert r.kbps is not None
    return r.kbps


@dataclass(frozen=True)
class Choice:
    """The rung to code with, why, and a warning when it is far from what was asked."""

    rung: Rung
    reason: str
    warning: str | None = None


def stream_kbps(tier: TierFile, layers: int, channels: int, stereo: str = "auto",
                side_layers: int | None = None) -> float | None:
    """Expected real kbps of a ``channels``-channel stream coded with ``layers`` layers.

    Mono rates per channel; a pair coded mid/side pays its side at ``side_layers`` (the
    encoder's default depth) instead. An estimate: silent channels and L/R packets differ.
    """
    rates = tier.layer_kbps()
    if not 1 <= layers <= len(rates) or rates[layers - 1] is None:
        return None
    top = rates[layers - 1]
    assert top is not None
    if channels != 2 or stereo == "lr":
        return top * channels
    side = min(layers, side_layers or default_side_layers(tier.layers))
    side_rate = rates[side - 1]
    return top + (side_rate if side_rate is not None else top)


def _score(tier: TierFile, layers: int) -> tuple[float | None, str | None]:
    per = tier.meta.get("dev_layers")
    m = per[layers - 1] if per and len(per) == tier.layers else (
        tier.meta.get("dev", {}) if layers == tier.layers else {})
    for metric in METRICS:
        v = m.get(metric) if isinstance(m, dict) else None
        if isinstance(v, (int, float)):
            return float(v), metric
    return None, None


def rung(tier: TierFile, layers: int, channels: int, stereo: str = "auto",
         side_layers: int | None = None) -> Rung:
    """Describe ``tier`` at ``layers`` layers for a ``channels``-channel input."""
    score, metric = _score(tier, layers)
    return Rung(tier, layers, stream_kbps(tier, layers, channels, stereo, side_layers),
                score, metric)


def family(input_rate: int, tiers: list[TierFile] | None = None) -> list[TierFile]:
    """The installed tiers whose sample rate is nearest ``input_rate`` (ties: the higher)."""
    tiers = tiers if tiers is not None else [tierfile.read(p)
                                             for p in catalog.available().values()]
    if not tiers:
        raise catalog.TierError("no tier is installed")
    dist = {t.sample_rate: abs(math.log(t.sample_rate / input_rate)) for t in tiers}
    best = min(dist.values())
    rate = max(r for r, d in dist.items() if d - best < 1e-9)
    return sorted((t for t in tiers if t.sample_rate == rate), key=lambda t: t.name)


def default_tier(input_rate: int, tiers: list[TierFile] | None = None) -> TierFile:
    """The family's default tier (``DEFAULT_TIERS``), else its deepest, first by name."""
    fam = family(input_rate, tiers)
    for name in DEFAULT_TIERS:
        for t in fam:
            if t.name == name:
                return t
    return max(fam, key=lambda t: (t.layers, [-ord(c) for c in t.name]))


def choose(want_kbps: float, input_rate: int, channels: int, stereo: str = "auto",
           side_layers: int | None = None, tiers: list[TierFile] | None = None) -> Choice:
    """The best-scoring rung within ``want_kbps`` (whole stream) for this input."""
    fam = family(input_rate, tiers)
    rungs = [r for t in fam for k in range(1, t.layers + 1)
             if (r := rung(t, k, channels, stereo, side_layers)).kbps is not None]
    if not rungs:
        names = ", ".join(t.name for t in fam)
        raise catalog.TierError(f"no tier for {input_rate} Hz audio records its bitrate "
                                f"({names}); give --tier")
    fits = [r for r in rungs if _kbps(r) <= want_kbps * FIT_SLACK]
    if not fits:
        low = min(rungs, key=_kbps)
        return Choice(low, "the lowest rate available",
                      f"{want_kbps:g} kbps is below the lowest rate for {input_rate} Hz, "
                      f"{channels}-channel audio ({low.describe()})")
    # Best score first; rungs without one rank below scored ones, by rate; ties: cheaper.
    if any(r.score is not None for r in fits):
        best = max(fits, key=lambda r: (r.score is not None, r.score or 0.0, -_kbps(r)))
    else:  # nothing to rank by: the most bits
        best = max(fits, key=_kbps)
    why = (f"best {METRIC_LABELS[best.metric]} within {want_kbps:g} kbps"
           if best.metric is not None else f"highest rate within {want_kbps:g} kbps")
    top = max(rungs, key=_kbps)
    warning = None
    if _kbps(top) < want_kbps * FAR_BELOW:
        warning = (f"{want_kbps:g} kbps is far above the highest rate for {input_rate} Hz, "
                   f"{channels}-channel audio ({top.describe()})")
    elif _kbps(best) < want_kbps * FAR_BELOW:
        why += "; the higher-rate rungs score lower"
    return Choice(best, why, warning)


def layers_within(tier: TierFile, max_layers: int, want_kbps: float, channels: int,
                  side_layers: int | None = None) -> int:
    """``nwc truncate --bitrate``: the most layers (up to ``max_layers``) whose expected
    whole-stream rate fits ``want_kbps``; raises ``ValueError`` if even one layer does not."""
    rates = [stream_kbps(tier, k, channels, side_layers=side_layers)
             for k in range(1, max_layers + 1)]
    if any(r is None for r in rates):
        raise ValueError(f"tier {tier.name!r} records no per-layer bitrates; use --layers")
    known = [r for r in rates if r is not None]
    fitting = [k + 1 for k, r in enumerate(known) if r <= want_kbps * FIT_SLACK]
    if not fitting:
        raise ValueError(f"one layer of {tier.name!r} needs about {known[0]:.1f} kbps for "
                         f"{channels} channel(s), more than {want_kbps:g} kbps")
    return fitting[-1]
