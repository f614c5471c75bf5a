"""The ``nwc`` command: encode, decode, info, tiers, train; eval lives in eval_cmd.py.

Arguments and I/O only: the codec lives in ``nwc.codec`` and the byte format in
``nwc.formats``. Exit codes: 0 ok, 1 bad data or runtime failure, 2 usage. Errors are one line
on stderr with a hint; ``--debug`` shows the traceback. Nothing but data goes to stdout.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np

from .. import __version__
from ..codec.framing import MAX_PACKET_FRAMES
from ..formats import container as fmt
from .audio_io import AtomicOutput, InputError, open_audio
from .batch import batch_options, batched
from .pcm_out import FORMATS, PcmWriter, check_format, format_for
from .stdio import Terminated, install_signal_handlers, std_binary
from .tags import merge, parse_pairs, tag_options
from .target import STDOUT_ALIASES, OutputError

if TYPE_CHECKING:  # torch-free start: the codec is imported where it is used
    from ..codec.choose import Rung
    from ..codec.engine import NpTier
    from ..codec.tier import Tier
    from ..codec.tierfile import TierFile

class Fatal(Exception):
    """A user-facing error: one line, exit code 1."""


def _say(ctx_quiet: bool, msg: str) -> None:
    if not ctx_quiet:
        click.echo(msg, err=True)


def handle_errors(fn: Callable) -> Callable:
    """Turn every failure into one line on stderr and an exit code (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        debug = kwargs.get("debug", False)
        try:
            return fn(*args, **kwargs)
        except BrokenPipeError:
            # The reader went away (`nwc decode x - | head`): leave quietly.
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            except OSError:
                pass
            sys.exit(0)
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM/SIGHUP (stdio.Terminated)
            signum = e.signum if isinstance(e, Terminated) else 2
            click.echo(f"nwc: {'terminated' if signum != 2 else 'interrupted'}", err=True)
            sys.exit(128 + signum)
        except click.exceptions.Exit:
            raise
        except click.ClickException:
            raise
        except Exception as e:  # noqa: BLE001 - the CLI's last line of defence
            if debug:
                traceback.print_exc()
            click.echo(f"nwc: error: {_describe(e)}", err=True)
            sys.exit(1)

    return wrapper


def _describe(e: Exception) -> str:
    from ..codec.catalog import TierError  # not codec.tier: reporting must not import torch

    msg = str(e) or type(e).__name__
    if isinstance(e, fmt.UnsupportedVersionError):
        return f"{msg} (upgrade nwc to read it)"
    if isinstance(e, fmt.FormatError):
        return f"{msg} (is this an .nwc stream?)"
    if isinstance(e, TierError):
        return f"{msg} (see `nwc tiers`; set NWC_WEIGHTS to a folder of tiers)"
    if isinstance(e, (FileExistsError, InputError, OutputError, Fatal)):
        return msg
    if isinstance(e, OSError):
        return f"{e.filename or ''}: {e.strerror or msg}".lstrip(": ")
    return f"{type(e).__name__}: {msg} (rerun with --debug for details)"


debug_option = click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No summary or progress.")
force_option = click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version",
                      message=f"nwc {__version__} (container format {fmt.FORMAT_VERSION})")
def cli() -> None:
    """nwc: neural waveform codec. Encode audio to .nwc streams and back.

    IN and OUT may be `-` for stdin/stdout, so nwc works in pipes:
    `arecord -f S16_LE -r 16000 | nwc encode - - | nwc decode - - | aplay`.
    """


def _kbps_arg(bitrate: str) -> float:
    """``--bitrate`` in kbit/s (a bare number is kbit/s, as for opusenc and lame)."""
    from ..codec.choose import parse_kbps

    try:
        return parse_kbps(bitrate)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--bitrate") from None


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


def _elapsed_since_start() -> float:
    """Seconds since this process started (interpreter, imports and model load included), so
    "x real time" is what the user waited; since nwc's import where /proc is missing."""
    fallback = time.perf_counter() - _IMPORTED
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            up = float(f.read().split()[0])
        return max(fallback, up - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return fallback


_IMPORTED = time.perf_counter()


def _timer() -> Callable[[], float]:
    """Wall time of this command: from process start, or (batch: many files a process) from
    now."""
    if _Progress.enabled:
        return _elapsed_since_start
    t0 = time.perf_counter()
    return lambda: time.perf_counter() - t0


def _refuse_audio_name(out: str, sink: AtomicOutput) -> None:
    """``nwc encode in.wav out.wav`` would put .nwc bytes under an audio file's name."""
    from .batch import AUDIO_SUFFIXES

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


def _load_tier(name: str, threads: int) -> Tier | NpTier:
    """Build tier ``name`` for the engine ``--device`` chose: NumPy on the CPU (milliseconds),
    torch on a GPU (imports torch: seconds)."""
    from ..codec import engine
    from .batch import model_device, torch_engine

    model_device()
    if not torch_engine():
        engine.blas_threads(threads)
        return engine.load_numpy(name)
    import torch

    from ..codec import tier as tiers

    torch.set_num_threads(threads)
    return tiers.load(name)


def _load_checked(t: TierFile, threads: int) -> Tier | NpTier:
    """The tier ``t`` describes, refusing one whose hash differs from its JSON's."""
    loaded = _load_tier(t.name, threads)
    if loaded.hash != t.hash:  # what the header said must be what codes the stream
        raise Fatal(f"tier {t.name!r} changed while loading (hash {loaded.hash}, "
                    f"its JSON said {t.hash})")
    return loaded


class _Progress:
    """Seconds-of-audio progress on stderr, only when it is a terminal."""

    enabled = True  # batch mode turns bars off: several files share one terminal

    def __init__(self, total_s: float | None, quiet: bool, label: str) -> None:
        self.bar = None
        if not quiet and self.enabled and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total_s, unit="s", desc=label, file=sys.stderr, leave=False,
                            bar_format="{desc} {n:.1f}/{total_fmt} s audio [{elapsed}, {rate_fmt}]")

    def update(self, s: float) -> None:
        if self.bar is not None:
            self.bar.update(s)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@cli.command()
@click.argument("inp", metavar="IN...", nargs=-1)
@click.argument("out", metavar="OUT")
@click.option("-t", "--tier", metavar="NAME|FILE.json", shell_complete=_complete_tiers,
              help="Tier name (see `nwc tiers`) or a tier's .json file. Default: follows the "
                   "input's rate: speech-16k up to 24 kHz, music above.")
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
           tag_title, tag_artist, tag_album, tag_date, tag_comment, no_input_tags, tags,
           raw, raw_rate, raw_channels, raw_format, threads, verify, force, quiet, debug) -> None:
    """Encode audio IN (any format soundfile reads, also on stdin; or --raw PCM) to an .nwc
    stream.

    Many files: `nwc encode a.wav b.flac talks/ -o coded/ --jobs 4` (folders are searched
    recursively; each output is IN's name, or its path below the folder, as .nwc).
    """
    from ..codec.catalog import header_for
    from ..codec.choose import FAR_BELOW
    from ..codec.tierfile import check_weights

    elapsed = _timer()
    if tier and bitrate:
        raise click.UsageError("give --tier or --bitrate, not both")
    if layers is not None and bitrate:
        raise click.UsageError("give --layers or --bitrate, not both")
    want = _kbps_arg(bitrate) if bitrate else None
    given = [(k.upper(), v) for k, v in (("title", tag_title), ("artist", tag_artist),
                                         ("album", tag_album), ("date", tag_date),
                                         ("comment", tag_comment)) if v is not None]
    given += parse_pairs(tags)
    if verify and out in STDOUT_ALIASES:
        raise click.UsageError("--verify needs OUT to be a file")
    kept: list[np.ndarray] = []  # the input again, as --verify's reference
    sink = AtomicOutput(out, force)
    sink.check(inp)
    _refuse_audio_name(out, sink)
    src = open_audio(inp, raw, raw_rate, raw_channels, raw_format)
    if src.channels > 255:
        raise Fatal(f"cannot code {src.channels} channels (1 to 255)")
    rung, why, warning = _pick_rung(tier, want, layers, src.rate, src.channels, stereo,
                                    side_layers)
    t, layers = rung.tier, rung.layers
    if side_layers is not None and side_layers > t.layers:
        raise click.BadParameter(f"tier {t.name} has {t.layers} layer(s)",
                                 param_hint="--side-layers")
    packet_frames = _packet_frames(t, packet_frames, max_delay)
    check_weights(t)
    tag_map, joined = merge([] if no_input_tags else src.tags, given)
    if not tier:  # nwc chose: say what and why before the work
        _say(quiet, f"nwc: {rung.describe()} for {src.channels} ch ({why})")
    if warning:
        _say(quiet, f"nwc: warning: {warning}")
    if joined:
        _say(quiet, f"nwc: tag(s) {', '.join(joined)} given more than once: the values are "
                    "kept joined by '; '")
    if src.rate != t.sample_rate:
        _say(quiet, f"nwc: resampling {src.rate} Hz to {t.sample_rate} Hz for tier {t.name} "
                    "(decode restores the original rate)")
    header = header_for(t, src.rate, src.channels, src.frames, tag_map, layers, packet_frames)
    with sink as f:
        # The header needs only the tier's JSON: a pipe gets it before torch loads (~1 s).
        w = fmt.ContainerWriter(f, header)
        from ..codec.api import StreamEncoder

        enc = StreamEncoder(_load_checked(t, threads), src.rate, src.channels, layers,
                            stereo=stereo, side_layers=side_layers, packet_frames=packet_frames)
        enc.warm_up()  # before the audio: a live stream's first packet is not held up
        prog = _Progress(src.frames / src.rate if src.frames else None, quiet, "encode")
        for block in src.blocks:
            for p in enc.push(block):
                w.write(p)
            prog.update(block.shape[0] / src.rate)
            if verify:
                kept.append(block)
        for p in enc.finish():
            w.write(p)
        w.write_end(enc.next_seq, enc.coded_samples, enc.input_samples)
        nbytes = w.bytes_written
    prog.close()
    secs = enc.input_samples / src.rate
    wall = elapsed()
    kbps = 8 * nbytes / secs / 1000 if secs else 0.0
    _say(quiet, f"nwc: encoded {src.name} ({secs:.2f} s, {src.channels} ch, {src.rate} Hz) "
                f"to {_label(out)} with tier {t.name} ({layers} of {t.layers} layer(s)): "
                f"{nbytes} bytes, {kbps:.2f} kbps, "
                f"{wall:.2f} s ({secs / wall if wall else 0:.1f}x real time)")
    if want is not None and not warning and secs >= 1 and not (
            want * FAR_BELOW <= kbps <= want * 1.15):
        _say(quiet, f"nwc: warning: the real rate {kbps:.1f} kbps is far from the "
                    f"{want:g} kbps asked for")
    if verify:
        from .eval_cmd import verify_written

        ref = np.concatenate(kept) if kept else np.zeros((0, src.channels), np.float32)
        verify_written(out, ref, src.rate)


def _label(path: str) -> str:
    return "stdout" if path in STDOUT_ALIASES else path


@cli.command()
@click.argument("inp", metavar="IN...", nargs=-1)
@click.argument("out", metavar="OUT")
@click.option("-r", "--rate", type=click.IntRange(1000, 768_000),
              help="Output sample rate (default: the original rate).")
@click.option("--format", "out_format", type=click.Choice(list(FORMATS)),
              help="Output format (default: from OUT's suffix; wav for `-`, pipes and "
                   "devices).")
@click.option("--bits", type=click.Choice(["16", "24", "float"]), default="16",
              show_default=True, help="Sample format of wav/raw/flac/aiff output.")
@click.option("--pad", is_flag=True,
              help="A stream cut short (no end packet): pad with silence to the length its "
                   "header announced (default: stop where the audio stops).")
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True,
              help="CPU threads for the model.")
@click.option("--conceal", type=click.Choice(["auto", "silence"]), default="auto",
              show_default=True,
              help="Fill lost packets with a continuation of the signal (auto) or silence.")
@click.option("--strict", is_flag=True,
              help="Exit 1 on any damage, even damage that cost no audio.")
@click.option("--allow-long-gaps", is_flag=True,
              help="Fill gaps beyond the limit (decoded audio + 60 s) instead of refusing.")
@batch_options
@force_option
@quiet_option
@debug_option
@handle_errors
@batched("decode")
def decode(inp, out, rate, out_format, bits, pad, threads, conceal, strict, allow_long_gaps,
           force, quiet, debug) -> None:
    """Decode an .nwc stream IN (`-` = stdin) to audio OUT (`-` = stdout), in the format
    OUT's suffix names (.wav .flac .aiff .ogg .opus .mp3 .raw) with the stream's tags.

    Many files: `nwc decode a.nwc coded/ -o decoded/ --jobs 4` (folders are searched
    recursively for .nwc; outputs get the --format suffix, .wav by default).
    """
    elapsed = _timer()
    sink = AtomicOutput(out, force)
    sink.check(inp)
    out_format = format_for(out, out_format, sink.streaming)
    check_format(out_format, bits, sink.streaming)

    from ..codec.api import StreamDecoder

    src = std_binary("stdin") if inp == "-" else open(inp, "rb")  # noqa: SIM115
    with src:
        reader = fmt.ContainerReader(src)
        h = reader.header
        t = _load_tier(h.tier, threads)
        dec = StreamDecoder(t, h, rate, pad_truncated=pad, allow_long_gaps=allow_long_gaps,
                            conceal=conceal)
        dec.warm_up()  # before the packets: a live stream's first audio is not held up
        out_rate = dec.out_rate
        prog = _Progress(h.duration, quiet, "decode")
        with sink as f, PcmWriter(f, out_format, bits, out_rate, h.channels, sink.streaming,
                                  h.tags) as writer:
            for item in reader:
                if isinstance(item, fmt.Damage) and not quiet:
                    click.echo(f"nwc: warning: damaged stream at byte {item.offset} "
                               f"({item.reason}); skipping", err=True)
                for pcm in dec.feed(item):  # bounded blocks, however long a gap
                    writer.write(pcm)
                    prog.update(pcm.shape[0] / out_rate)
            for pcm in dec.drain():
                writer.write(pcm)
            writer.close()
            cut_failed = dec.stats.cut and not _cut_output(sink, writer, dec.stats.cut)
        prog.close()
    st = dec.stats
    secs = writer.frames / out_rate
    wall = elapsed()
    for note in st.notes:
        click.echo(f"nwc: warning: {note}", err=True)
    if cut_failed:
        click.echo(f"nwc: warning: {st.cut} samples past the stream's end were already "
                   "written to a pipe", err=True)
    if st.lost_samples:
        filled = "concealed" if conceal == "auto" else "filled with silence"
        click.echo(f"nwc: warning: {st.lost_samples / t.sample_rate:.2f} s of audio lost to "
                   f"damage ({st.damaged} damaged stretches), {filled}", err=True)
    if not st.ended:
        whole = f" of {h.duration:.2f} s" if h.duration is not None else ""
        click.echo("nwc: warning: the stream ends early (no end packet: truncated?); "
                   + (f"padded with silence to {secs:.2f} s" if pad else
                      f"decoded the {secs:.2f} s{whole} it holds"
                      + ("" if h.duration is None else "; --pad fills the rest with silence")),
                   err=True)
    if writer.unexported and not quiet:
        click.echo(f"nwc: tag(s) {', '.join(writer.unexported)} cannot be stored in "
                   f"{out_format}; they stay in the .nwc (`nwc info`)", err=True)
    _say(quiet, f"nwc: decoded {_label(inp)} to {_label(out)} ({secs:.2f} s, {h.channels} ch, "
                f"{out_rate} Hz, {out_format}) with tier {t.name}, {wall:.2f} s "
                f"({secs / wall if wall else 0:.1f}x real time)")
    if st.lost_samples or not st.ended or st.refused or cut_failed or (strict and st.damaged):
        sys.exit(1)


def _cut_output(sink: AtomicOutput, writer: PcmWriter, cut: int) -> bool:
    """Cut the last ``cut`` frames off the finished temporary output; False for a pipe."""
    if sink.tmp is None:
        return False
    keep = max(0, writer.frames - cut)
    writer.frames = keep
    if writer.sf is None:  # raw: whole frames of fixed size
        width = {"16": 2, "24": 3, "float": 4}[writer.bits] * writer.channels
        assert sink.f is not None
        sink.f.flush()
        sink.f.truncate(keep * width)
        return True
    import soundfile as sf

    tmp = f"{sink.tmp}.cut"
    try:
        with sf.SoundFile(sink.tmp) as r, sf.SoundFile(tmp, "w", r.samplerate, r.channels,
                                                        r.subtype, format=r.format) as w:
            left = keep
            while left > 0:  # block by block: bounded memory
                block = r.read(min(left, 1 << 16), dtype="float32", always_2d=True)
                if not block.shape[0]:
                    break
                w.write(block)
                left -= block.shape[0]
        os.replace(tmp, sink.tmp)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return True


class _CountingReader:
    """Counts the bytes read through it (the stream size, even on a pipe)."""

    def __init__(self, f) -> None:
        self.f, self.n = f, 0

    def read(self, n: int = -1) -> bytes:
        b = self.f.read(n)
        self.n += len(b)
        return b


def _describe_stream(inp: str) -> dict:
    from ..codec.limits import header_problem
    from ..codec.stereo import MS, split_side  # numpy only: info stays free of torch

    src = std_binary("stdin") if inp == "-" else open(inp, "rb")  # noqa: SIM115
    with src:
        counter = _CountingReader(src)
        reader = fmt.ContainerReader(counter)
        h = reader.header
        problem = header_problem(h)
        if problem:
            raise Fatal(f"stream header out of bounds: {problem}")
        packets = damaged = payload = ms_packets = covered = 0
        side_layers: set[int] = set()
        end = None
        for item in reader:
            if isinstance(item, fmt.Damage):
                damaged += 1
            elif item.kind == fmt.AUDIO:
                packets += 1
                covered = max(covered, item.granule)
                payload += len(item.side) + sum(len(b) for b in item.layers)
                split = split_side(item.side, h.channels)
                if split is not None and split[1].mode == MS:
                    ms_packets += 1
                    side_layers.add(split[1].side_layers or h.num_layers)
            elif item.kind == fmt.END:
                end = item
        total_bytes = counter.n
    samples = end.original_samples if end is not None else h.total_samples
    declared = samples
    refused = samples is not None and not _length_plausible(h, samples, covered)
    if refused:  # a forged length (288 230 376 151 711 s): say what the packets carry
        damaged += 1
        samples = round(covered * h.original_rate / h.sample_rate)
    secs = samples / h.original_rate if samples is not None else None
    # What the packets hold (original rate): less than the duration if cut short.
    present_s = (end.granule if end is not None else covered) / h.sample_rate
    d = {
        "format_version": fmt.FORMAT_VERSION,
        "tier": h.tier, "model_id": h.model_id, "weights_hash": h.weights_hash,
        "sample_rate": h.sample_rate, "original_rate": h.original_rate, "channels": h.channels,
        "total_samples": samples, "duration_s": secs, "codec_delay": h.codec_delay,
        "frame_size": h.frame_size, "hop_size": h.hop_size, "num_layers": h.num_layers,
        "packet_frames": h.packet_frames, "packet_duration_s": h.packet_duration,
        # A packet is coded once its last frame is complete (codec/framing.py).
        "algorithmic_latency_ms": 1000 * (h.packet_samples + h.frame_size - h.hop_size)
        / h.sample_rate,
        "gain_bits": h.gain_bits, "coder": h.coder, "tags": h.tags,
        "packets": packets, "damaged": damaged, "ended": end is not None,
        "present_s": present_s,
        "declared_samples": declared, "length_refused": refused,
        "payload_bytes": payload,
    }
    if h.channels == 2:  # how the encoder coded the pair (codec/stereo.py)
        d["stereo"] = {"ms_packets": ms_packets, "lr_packets": packets - ms_packets,
                       "side_layers": sorted(min(n, h.num_layers) for n in side_layers)}
    d["bytes"] = total_bytes
    rate_s = secs if end is not None else present_s
    if rate_s:
        d["kbps"] = 8 * total_bytes / rate_s / 1000
    return d


def _length_plausible(h: fmt.StreamHeader, samples: int, covered: int) -> bool:
    """Is a declared length (original rate) within what the decoder would fill (limits)?"""
    from ..codec.limits import gap_allowed

    coded = samples * h.sample_rate / h.original_rate
    return gap_allowed(0, max(0, int(coded) - covered), covered, h.sample_rate)


@cli.command()
@click.argument("inputs", metavar="IN...", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True,
              help="Machine-readable output (a list when several INs are given).")
@debug_option
@handle_errors
def info(inputs, as_json, debug) -> None:
    """Describe .nwc streams (header, duration, packets, bitrate, tags) without decoding audio.

    Exits 1 if a stream is damaged, cut short or unreadable (after describing the others).
    """
    docs, bad = [], 0
    for inp in inputs:
        try:
            d = {"file": inp, **_describe_stream(inp)}
        except Exception as e:  # noqa: BLE001 - one bad file does not hide the others
            if len(inputs) == 1:
                raise
            if debug:
                traceback.print_exc()
            click.echo(f"nwc: error: {inp}: {_describe(e)}", err=True)
            bad += 1
            continue
        bad += bool(d["damaged"] or not d["ended"] or d["length_refused"])
        docs.append(d)
        if not as_json:
            if len(inputs) > 1:
                click.echo(("\n" if len(docs) > 1 else "") + f"{inp}:")
            click.echo(_info_text(d))
    if as_json:
        click.echo(json.dumps(docs[0] if len(inputs) == 1 else docs, indent=1))
    for d in docs:  # a declared length beyond the decoder's limits: an error, after the report
        if d["length_refused"]:
            click.echo(f"nwc: error: {d['file']}: the stream declares {d['declared_samples']} "
                       f"samples but its packets carry {d['total_samples']}: length refused "
                       "(decoder limit)", err=True)
    if bad:
        sys.exit(1)


def _info_text(d: dict) -> str:
    dur = f"{d['duration_s']:.3f} s" if d["duration_s"] is not None else "unknown"
    if not d["ended"]:
        dur = (f"{d['present_s']:.3f} s present of {dur} announced (the stream is cut "
               "short: no end packet)")
    lines = [
        f"tier:        {d['tier']} ({d['model_id']}, weights {d['weights_hash']})",
        f"audio:       {d['channels']} ch, original {d['original_rate']} Hz, "
        f"coded at {d['sample_rate']} Hz",
        f"duration:    {dur} ({d['total_samples']} samples)",
        f"packets:     {d['packets']} x {d['packet_duration_s'] * 1000:.0f} ms "
        f"({d['packet_frames']} frame(s)), {d['num_layers']} layer(s), "
        f"frame {d['frame_size']}/hop {d['hop_size']}",
        f"latency:     {d['algorithmic_latency_ms']:.1f} ms algorithmic (a packet and the "
        "frame overlap)",
        f"coder:       {d['coder']}",
    ]
    if "kbps" in d:
        lines.append(f"bitrate:     {d['kbps']:.2f} kbps ({d['bytes']} bytes)")
    if "stereo" in d:
        s = d["stereo"]
        depth = "/".join(map(str, s["side_layers"]))
        lines.append(f"stereo:      M/S in {s['ms_packets']} of "
                     f"{s['ms_packets'] + s['lr_packets']} packets"
                     + (f", side carries {depth} layer(s)" if depth else ""))
    if d["damaged"] or not d["ended"]:
        lines.append(f"damage:      {d['damaged']} damaged stretch(es), "
                     f"end packet {'present' if d['ended'] else 'MISSING'}")
    for k, v in d["tags"].items():
        lines.append(f"tag:         {k}={v}")
    return "\n".join(lines)


@cli.command("tiers")
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



@cli.command()
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
              help="Override one term's weight (time, mel, pw, nmr); repeatable.")
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
@click.option("--max-minutes", type=float, default=0.0, help="Stop after this much time.")
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
@click.option("--schedule", type=click.Choice(["cosine", "open"]), default="cosine",
              show_default=True,
              help="cosine: learning rate and rate target follow the step/time budget; open: "
                   "constant learning rate, rate ramp over --ramp-steps (a run resumed again "
                   "and again).")
@click.option("--ramp-steps", type=click.IntRange(1), default=2000, show_default=True,
              help="Steps over which the rate target falls (--schedule open).")
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
@click.option("--run-dir", help="Checkpoint folder (default: .OUT.run beside OUT).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed (initialisation and batches).")
@quiet_option
@debug_option
@handle_errors
def train(data_dir, out, bitrate, lpc, sample_rate, loss, loss_weights, harp, freeze, name,
          resume, init_from, device, max_steps, max_minutes,
          quantizer, plan, channels, code_channels, batch, lr, warmup_steps, schedule,
          ramp_steps, ramp_start, eval_minutes, eval_clips, checkpoint_minutes, threads, run_dir,
          seed, quiet, debug) -> None:
    """Train a tier on a folder of audio (files under a `dev` folder form the dev split)."""
    from ..codec.engine import torch_available

    if not torch_available():
        raise Fatal('nwc train needs torch, which this install lacks: pip install "nwc[train]"')
    from ..train.config import ConfigError, TrainConfig, model_options
    from ..train.trainer import train as run
    from .batch import AUDIO_SUFFIXES

    rates = [_kbps_arg(b) * 1000 for b in bitrate.split(",")]
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
                      max_steps=max_steps, max_minutes=max_minutes, batch=batch, lr=lr,
                      warmup_steps=warmup_steps, ramp_start=ramp_start, schedule=schedule,
                      ramp_steps=ramp_steps,
                      eval_minutes=eval_minutes, eval_clips=eval_clips, seed=seed,
                      checkpoint_minutes=checkpoint_minutes,
                      device=device, threads=threads, resume=resume,
                      init_from=init_from or "", run_dir=run_dir or "",
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


# Sub-commands in their own modules register themselves (they need the helpers above).
from . import eval_cmd, integrity_cmd, man_cmd, tag_cmd, truncate_cmd  # noqa: E402, F401


def main() -> None:
    """Console entry point."""
    install_signal_handlers()
    cli(prog_name="nwc")


if __name__ == "__main__":
    main()
