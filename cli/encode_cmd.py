"""``nwc encode``: audio in, an .nwc stream out, with the tier and layers chosen from the input.

Arguments and I/O only: what to code with is ``codec/choose.py``'s decision, the coding is
``codec.api.StreamEncoder``'s. The stream header goes out before the model loads, so a pipe
sees it at once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np

from ..codec.framing import MAX_PACKET_FRAMES
from ..formats import container as fmt
from .audio_io import AtomicOutput, AudioSource, open_audio
from .batch import AUDIO_SUFFIXES, batch_options, batched
from .common import (
    Fatal,
    Progress,
    debug_option,
    force_option,
    handle_errors,
    kbps_arg,
    label,
    quiet_option,
    say,
    timer,
)
from .device import load_tier
from .tags import merge, parse_pairs, tag_options
from .target import STDOUT_ALIASES

if TYPE_CHECKING:  # torch-free start: the codec is imported where it is used
    from ..codec.choose import Rung
    from ..codec.engine import NpTier
    from ..codec.tier import Tier
    from ..codec.tierfile import TierFile


@dataclass(frozen=True)
class Plan:
    """What a file is coded with: a rung (tier and layers), the packet size, why, a warning."""

    rung: Rung
    packet_frames: int | None
    why: str
    warning: str | None

    @property
    def tier(self) -> TierFile:
        return self.rung.tier

    @property
    def layers(self) -> int:
        return self.rung.layers


def _pick_rung(tier: str | None, want: float | None, layers: int | None, rate: int,
               channels: int, stereo: str, side_layers: int | None
               ) -> tuple[Rung, str, str | None]:
    """The tier and layers to code (the JSON only: no torch yet), why, and any warning."""
    from ..codec import choose

    if want is not None:
        c = choose.choose(want, rate, channels, stereo, side_layers)
        return c.rung, c.reason, c.warning
    if tier:
        t, why = choose.load_tier_arg(tier), "as asked"
    else:
        t = choose.default_tier(rate)
        why = f"the default for {rate} Hz input; choose with -t or -b"
    if layers is not None and layers > t.layers:
        raise click.BadParameter(f"tier {t.name} has {t.layers} layer(s)", param_hint="--layers")
    return choose.rung(t, layers or t.layers, channels, stereo, side_layers), why, None


def _complete_tiers(ctx, param, incomplete: str) -> list:
    """Shell completion of ``--tier``: the installed tiers' names."""
    from ..codec import catalog

    return [n for n in sorted(catalog.available()) if n.startswith(incomplete)]


def _refuse_audio_name(out: str, sink: AtomicOutput) -> None:
    """``nwc encode in.wav out.wav`` would put .nwc bytes under an audio file's name."""
    suffix = Path(out).suffix.lower()
    if sink.target.kind == "file" and suffix in AUDIO_SUFFIXES:
        raise click.UsageError(f"OUT {out!r} is named like {suffix} audio, but encode writes "
                               f"an .nwc stream; name it {Path(out).with_suffix('.nwc').name}")


def _packet_frames(t: TierFile, packet_frames: int | None, max_delay: float | None
                   ) -> int | None:
    """``--packet-frames``, or the most frames (up to the tier's) within ``--max-delay`` ms."""
    from ..codec.catalog import latency_ms

    if packet_frames is not None and max_delay is not None:
        raise click.UsageError("give --packet-frames or --max-delay, not both")
    if max_delay is None:
        return packet_frames
    f = t.framing
    fits = [p for p in range(1, f.packet_frames + 1)
            if latency_ms(replace(f, packet_frames=p), t.sample_rate) <= max_delay]
    if not fits:
        one = latency_ms(replace(f, packet_frames=1), t.sample_rate)
        raise click.BadParameter(f"tier {t.name} needs at least {one:g} ms (one frame a "
                                 "packet)", param_hint="--max-delay")
    return fits[-1]


def _load_checked(t: TierFile, threads: int) -> Tier | NpTier:
    """The tier ``t`` describes, refusing one whose hash differs from its JSON's."""
    loaded = load_tier(t.name, threads)
    if loaded.hash != t.hash:  # what the header said must be what codes the stream
        raise Fatal(f"tier {t.name!r} changed while loading (hash {loaded.hash}, "
                    f"its JSON said {t.hash})")
    return loaded


def _check_usage(tier: str | None, bitrate: str | None, layers: int | None) -> float | None:
    """Refuse option combinations that cannot work; the ``--bitrate`` asked for, in kbit/s."""
    if tier and bitrate:
        raise click.UsageError("give --tier or --bitrate, not both")
    if layers is not None and bitrate:
        raise click.UsageError("give --layers or --bitrate, not both")
    return kbps_arg(bitrate) if bitrate else None


def _plan(src: AudioSource, tier: str | None, want: float | None, layers: int | None,
          stereo: str, side_layers: int | None, packet_frames: int | None,
          max_delay: float | None) -> Plan:
    """Choose what ``src`` is coded with (tier JSONs only) and check it can be."""
    from ..codec.tierfile import check_weights

    if src.channels > 255:
        raise Fatal(f"cannot code {src.channels} channels (1 to 255)")
    rung, why, warning = _pick_rung(tier, want, layers, src.rate, src.channels, stereo,
                                    side_layers)
    t = rung.tier
    if side_layers is not None and side_layers > t.layers:
        raise click.BadParameter(f"tier {t.name} has {t.layers} layer(s)",
                                 param_hint="--side-layers")
    frames = _packet_frames(t, packet_frames, max_delay)
    check_weights(t)
    return Plan(rung, frames, why, warning)


def _announce(plan: Plan, src: AudioSource, chosen: bool, joined: list[str],
              quiet: bool) -> None:
    """Say, before the work, what nwc chose and why, and what it does to the input."""
    t = plan.tier
    if chosen:
        say(quiet, f"nwc: {plan.rung.describe()} for {src.channels} ch ({plan.why})")
    if plan.warning:
        say(quiet, f"nwc: warning: {plan.warning}")
    if joined:
        say(quiet, f"nwc: tag(s) {', '.join(joined)} given more than once: the values are "
                   "kept joined by '; '")
    if src.rate != t.sample_rate:
        say(quiet, f"nwc: resampling {src.rate} Hz to {t.sample_rate} Hz for tier {t.name} "
                   "(decode restores the original rate)")


@dataclass
class Written:
    """What ``_write`` coded: input samples, stream bytes, and the input kept for --verify."""

    input_samples: int
    nbytes: int
    kept: list[np.ndarray]


def _write(sink: AtomicOutput, header: fmt.StreamHeader, plan: Plan, src: AudioSource,
           stereo: str, side_layers: int | None, band_limit: bool, threads: int, keep: bool,
           quiet: bool) -> Written:
    """Code ``src`` into ``sink``: the header first (it needs only the tier's JSON, so a pipe
    gets it before the model loads), then packets as the input arrives, then END."""
    from ..codec.api import StreamEncoder

    kept: list[np.ndarray] = []
    with sink as f:
        w = fmt.ContainerWriter(f, header)
        enc = StreamEncoder(_load_checked(plan.tier, threads), src.rate, src.channels,
                            plan.layers, stereo=stereo, side_layers=side_layers,
                            packet_frames=plan.packet_frames, band_limit=band_limit)
        enc.warm_up()  # before the audio: a live stream's first packet is not held up
        prog = Progress(src.frames / src.rate if src.frames else None, quiet, "encode")
        for block in src.blocks:
            for p in enc.push(block):
                w.write(p)
            prog.update(block.shape[0] / src.rate)
            if keep:
                kept.append(block)
        for p in enc.finish():
            w.write(p)
        w.write_end(enc.next_seq, enc.coded_samples, enc.input_samples)
        nbytes = w.bytes_written
    prog.close()
    return Written(enc.input_samples, nbytes, kept)


def _report(src: AudioSource, out: str, plan: Plan, done: Written, wall: float,
            want: float | None, quiet: bool) -> None:
    """The summary line, and a warning when the real rate is far from ``--bitrate``."""
    from ..codec.choose import FAR_BELOW

    t = plan.tier
    secs = done.input_samples / src.rate
    kbps = 8 * done.nbytes / secs / 1000 if secs else 0.0
    say(quiet, f"nwc: encoded {src.name} ({secs:.2f} s, {src.channels} ch, {src.rate} Hz) "
               f"to {label(out)} with tier {t.name} ({plan.layers} of {t.layers} layer(s)): "
               f"{done.nbytes} bytes, {kbps:.2f} kbps, "
               f"{wall:.2f} s ({secs / wall if wall else 0:.1f}x real time)")
    if want is not None and not plan.warning and secs >= 1 and not (
            want * FAR_BELOW <= kbps <= want * 1.15):
        say(quiet, f"nwc: warning: the real rate {kbps:.1f} kbps is far from the "
                   f"{want:g} kbps asked for")


@click.command()
@click.argument("inp", metavar="IN...", nargs=-1)
@click.argument("out", metavar="OUT")
@click.option("-t", "--tier", metavar="NAME|FILE.json", shell_complete=_complete_tiers,
              help="Tier name (see `nwc tiers`) or a tier's .json file. Default: follows the "
                   "input's rate: speech-lpc-16k up to 24 kHz, music above.")
@click.option("-b", "--bitrate", metavar="KBPS",
              help="Real bitrate of the whole stream in kbit/s (16, 16k, 16kbps): the best-"
                   "scoring installed tier and layer count within it, for this input.")
@click.option("-l", "--layers", type=click.IntRange(1, 255),
              help="Code only the first LAYERS layers of a layered tier (default: all).")
@click.option("--stereo", type=click.Choice(["auto", "lr", "ms"]), default="auto",
              show_default=True,
              help="Two channels: L/R, mid/side, or per packet whichever suits (auto).")
@click.option("--side-layers", type=click.IntRange(1, 255),
              help="Layers the side channel carries in M/S packets (default: all for 1-2-layer "
                   "tiers, half for deeper ones).")
@click.option("--packet-frames", type=click.IntRange(1, MAX_PACKET_FRAMES),
              help="Frames per packet (default: the tier's, 16). Fewer: lower latency, "
                   "more container bytes; see `nwc info`.")
@click.option("--max-delay", type=click.FloatRange(0, min_open=True), metavar="MS",
              help="Use the largest packet (up to the tier's) whose algorithmic latency is "
                   "at most MS milliseconds (32 ms = 1 frame at 16 kHz).")
@click.option("--band-limit/--full-band", default=True, show_default=True,
              help="Say in each packet where the input's content ends, so the decoder "
                   "removes the coding noise above it (1 byte per channel and packet); "
                   "--full-band writes 1.0-style packets.")
@tag_options
@click.option("--raw", is_flag=True, help="IN is headerless PCM.")
@click.option("--raw-rate", type=click.IntRange(1, 1_000_000), default=16000, show_default=True,
              help="Sample rate of --raw input.")
@click.option("--raw-channels", type=click.IntRange(1, 255), default=1, show_default=True,
              help="Interleaved channels of --raw input.")
@click.option("--raw-format", type=click.Choice(["s16", "s24", "s32", "f32", "u8"]),
              default="s16", show_default=True, help="Little-endian sample format of --raw input.")
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True,
              help="CPU threads for the model.")
@click.option("--verify", is_flag=True,
              help="Decode OUT again and print its quality against IN on stderr (`nwc eval`).")
@batch_options
@force_option
@quiet_option
@debug_option
@handle_errors
@batched("encode")
def encode(inp, out, tier, bitrate, layers, stereo, side_layers, packet_frames, max_delay,
           band_limit, tag_title, tag_artist, tag_album, tag_date, tag_comment, no_input_tags, tags,
           raw, raw_rate, raw_channels, raw_format, threads, verify, force, quiet, debug) -> None:
    """Encode audio IN (any format soundfile reads, also on stdin; or --raw PCM) to an .nwc
    stream.

    Many files: `nwc encode a.wav b.flac talks/ -o coded/ --jobs 4` (folders are searched
    recursively; each output is IN's name, or its path below the folder, as .nwc).
    """
    from ..codec.catalog import header_for

    elapsed = timer()
    want = _check_usage(tier, bitrate, layers)
    given = [(k.upper(), v) for k, v in (("title", tag_title), ("artist", tag_artist),
                                         ("album", tag_album), ("date", tag_date),
                                         ("comment", tag_comment)) if v is not None]
    given += parse_pairs(tags)
    if verify and out in STDOUT_ALIASES:
        raise click.UsageError("--verify needs OUT to be a file")
    sink = AtomicOutput(out, force)
    sink.check(inp)
    _refuse_audio_name(out, sink)
    src = open_audio(inp, raw, raw_rate, raw_channels, raw_format)
    plan = _plan(src, tier, want, layers, stereo, side_layers, packet_frames, max_delay)
    tag_map, joined = merge([] if no_input_tags else src.tags, given)
    _announce(plan, src, not tier, joined, quiet)
    header = header_for(plan.tier, src.rate, src.channels, src.frames, tag_map, plan.layers,
                        plan.packet_frames)
    done = _write(sink, header, plan, src, stereo, side_layers, band_limit, threads, verify,
                  quiet)
    _report(src, out, plan, done, elapsed(), want, quiet)
    if verify:
        from .eval_cmd import verify_written

        ref = np.concatenate(done.kept) if done.kept else np.zeros((0, src.channels), np.float32)
        verify_written(out, ref, src.rate)
