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
from .audio_io import AtomicOutput, InputError, open_audio, pcm_bytes, pcm_ints, wav_header
from .batch import batch_options, batched

if TYPE_CHECKING:  # torch-free start: the codec is imported where it is used
    from ..codec.catalog import TierInfo
    from ..codec.engine import NpTier
    from ..codec.tier import Tier

DEFAULT_TIER = "speech-16k"


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
        except KeyboardInterrupt:
            click.echo("nwc: interrupted", err=True)
            sys.exit(130)
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
    if isinstance(e, (FileExistsError, InputError, Fatal)):
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


def _parse_tags(tags: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for t in tags:
        k, sep, v = t.partition("=")
        if not sep or not k:
            raise click.BadParameter(f"{t!r} is not KEY=VALUE", param_hint="--tag")
        out[k] = v
    return out


def _pick_tier(tier: str | None, bitrate: str | None) -> tuple[TierInfo, int]:
    """The tier (as its JSON describes it: no torch yet) and the layers to code."""
    from ..codec import catalog

    if tier and bitrate:
        raise click.UsageError("give --tier or --bitrate, not both")
    have = catalog.available()
    if bitrate:
        try:
            want = catalog.parse_bitrate(bitrate) / 1000
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--bitrate") from None
        # Every (tier, layer prefix) with a measured rate is a rung of the ladder.
        cands = [(t, k + 1, r) for t in (catalog.read(p) for p in have.values())
                 for k, r in enumerate(t.layer_kbps()) if r is not None]
        if not cands:
            raise Fatal("no installed tier records its bitrate (see `nwc tiers`)")
        best = min(cands, key=lambda c: abs(c[2] - want))
        return best[0], best[1]
    name = tier or DEFAULT_TIER
    if tier is None and name not in have and have:
        name = sorted(have)[0]
    t = catalog.info(name)
    return t, t.layers


def _packet_frames(t: TierInfo, packet_frames: int | None, max_delay: float | None
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


def _load_checked(t: TierInfo, threads: int) -> Tier | NpTier:
    """The tier ``t`` describes, refusing one whose hash differs from its JSON's."""
    loaded = _load_tier(t.name, threads)
    if loaded.hash != t.hash:  # what the header said must be what codes the stream
        raise Fatal(f"tier {t.name!r} changed while loading (hash {loaded.hash}, "
                    f"its JSON said {t.hash})")
    return loaded


_started: float | None = None  # CLOCK_BOOTTIME of this file's start (batch jobs); None: process


def _process_start() -> float:
    """When this process started (CLOCK_BOOTTIME seconds), from /proc; now where unknown."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.clock_gettime(time.CLOCK_BOOTTIME)


def command_seconds() -> float:
    """Wall time of the whole command so far, interpreter start-up and imports included (the
    summary's "x real time"; a batch counts each file from its own start)."""
    start = _started if _started is not None else _process_start()
    return max(time.clock_gettime(time.CLOCK_BOOTTIME) - start, 1e-3)


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
@click.option("-t", "--tier", help="Tier name (see `nwc tiers`).")
@click.option("-b", "--bitrate",
              help="Pick the installed tier (and layer count) nearest this rate, e.g. 16k.")
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
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Add a tag (repeatable).")
@click.option("--raw", is_flag=True, help="IN is headerless PCM.")
@click.option("--raw-rate", type=click.IntRange(1, 1_000_000), default=16000, show_default=True)
@click.option("--raw-channels", type=click.IntRange(1, 255), default=1, show_default=True)
@click.option("--raw-format", type=click.Choice(["s16", "s24", "s32", "f32", "u8"]),
              default="s16", show_default=True)
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
def encode(inp, out, tier, bitrate, layers, stereo, side_layers, packet_frames, max_delay, tags,
           raw, raw_rate, raw_channels, raw_format, threads, verify, force, quiet, debug) -> None:
    """Encode audio IN (any format soundfile reads; WAV or --raw on stdin) to an .nwc stream.

    Many files: `nwc encode a.wav b.flac talks/ -o coded/ --jobs 4` (folders are searched
    recursively; each output is IN's name, or its path below the folder, as .nwc).
    """
    from ..codec.catalog import check_weights, header_for

    tag_map = _parse_tags(tags)
    if verify and out == "-":
        raise click.UsageError("--verify needs OUT to be a file")
    kept: list[np.ndarray] = []  # the input again, as --verify's reference
    sink = AtomicOutput(out, force)
    sink.check()
    t, picked = _pick_tier(tier, bitrate)
    if layers is not None and bitrate:
        raise click.UsageError("give --layers or --bitrate, not both")
    layers = layers or picked
    if layers > t.layers:
        raise click.BadParameter(f"tier {t.name} has {t.layers} layer(s)", param_hint="--layers")
    if side_layers is not None and side_layers > t.layers:
        raise click.BadParameter(f"tier {t.name} has {t.layers} layer(s)",
                                 param_hint="--side-layers")
    packet_frames = _packet_frames(t, packet_frames, max_delay)
    check_weights(t)
    src = open_audio(inp, raw, raw_rate, raw_channels, raw_format)
    if src.channels > 255:
        raise Fatal(f"cannot code {src.channels} channels (1 to 255)")
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
    wall = command_seconds()
    kbps = 8 * nbytes / secs / 1000 if secs else 0.0
    _say(quiet, f"nwc: encoded {secs:.2f} s ({src.channels} ch, {src.rate} Hz) with tier "
                f"{t.name}: {nbytes} bytes, {kbps:.2f} kbps, "
                f"{secs / wall if wall else 0:.0f}x real time")
    if verify:
        from .eval_cmd import verify_written

        ref = np.concatenate(kept) if kept else np.zeros((0, src.channels), np.float32)
        verify_written(out, ref, src.rate)


@cli.command()
@click.argument("inp", metavar="IN...", nargs=-1)
@click.argument("out", metavar="OUT")
@click.option("-r", "--rate", type=click.IntRange(1000, 768_000),
              help="Output sample rate (default: the original rate).")
@click.option("--format", "out_format", type=click.Choice(["wav", "raw", "flac"]),
              help="Output format (default: from OUT's suffix, else wav).")
@click.option("--bits", type=click.Choice(["16", "24", "float"]), default="16",
              show_default=True, help="Sample format of wav/raw/flac output.")
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True)
@batch_options
@force_option
@quiet_option
@debug_option
@handle_errors
@batched("decode")
def decode(inp, out, rate, out_format, bits, threads, force, quiet, debug) -> None:
    """Decode an .nwc stream IN (`-` = stdin) to audio OUT (`-` = stdout).

    Many files: `nwc decode a.nwc coded/ -o decoded/ --jobs 4` (folders are searched
    recursively for .nwc; outputs get the --format suffix, .wav by default).
    """
    from ..codec.api import StreamDecoder

    sink = AtomicOutput(out, force)
    sink.check()
    if out_format is None:
        suffix = Path(out).suffix.lower().lstrip(".") if out != "-" else ""
        out_format = suffix if suffix in ("wav", "raw", "flac") else "wav"
    if out_format == "flac" and bits == "float":
        raise click.BadParameter("flac cannot hold float samples", param_hint="--bits")
    src = sys.stdin.buffer if inp == "-" else open(inp, "rb")  # noqa: SIM115
    with src:
        reader = fmt.ContainerReader(src)
        h = reader.header
        t = _load_tier(h.tier, threads)
        dec = StreamDecoder(t, h, rate)
        dec.warm_up()  # before the packets: a live stream's first audio is not held up
        out_rate = dec.out_rate
        prog = _Progress(h.duration, quiet, "decode")
        with sink as f:
            writer = _PcmWriter(f, out, out_format, bits, out_rate, h.channels)
            for item in reader:
                if isinstance(item, fmt.Damage) and not quiet:
                    click.echo(f"nwc: warning: damaged stream at byte {item.offset} "
                               f"({item.reason}); skipping", err=True)
                pcm = dec.push(item)
                writer.write(pcm)
                prog.update(pcm.shape[0] / out_rate)
            writer.write(dec.finish())
            writer.close()
        prog.close()
    st = dec.stats
    secs = writer.frames / out_rate
    wall = command_seconds()
    if st.lost_samples:
        click.echo(f"nwc: warning: {st.lost_samples / t.sample_rate:.2f} s of audio lost to "
                   f"damage ({st.damaged} damaged stretches), filled with silence", err=True)
    if not st.ended:
        click.echo("nwc: warning: stream has no end packet (truncated?)", err=True)
    _say(quiet, f"nwc: decoded {secs:.2f} s ({h.channels} ch, {out_rate} Hz) from tier {t.name}, "
                f"{secs / wall if wall else 0:.0f}x real time")
    if st.lost_samples or not st.ended:
        sys.exit(1)


class _PcmWriter:
    """Writes decoded blocks as wav/raw to a pipe, or via soundfile to a (seekable) file."""

    def __init__(self, f, out: str, out_format: str, bits: str, rate: int, channels: int) -> None:
        import soundfile as sf

        self.f, self.bits, self.frames = f, bits, 0
        self.sf = None
        if out != "-" and out_format in ("wav", "flac"):
            subtype = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}[bits]
            self.sf = sf.SoundFile(f, "w", rate, channels, subtype, format=out_format.upper())
        elif out_format == "flac":
            raise click.BadParameter("flac cannot be streamed to stdout; use wav or raw",
                                     param_hint="--format")
        elif out_format == "wav":
            f.write(wav_header(rate, channels, bits, None))

    def write(self, x: np.ndarray) -> None:
        if x.shape[0] == 0:
            return
        self.frames += x.shape[0]
        if self.sf is not None:
            # soundfile writes int32 arrays by their top 24 bits for PCM_24.
            if self.bits == "float":
                self.sf.write(x)
            else:
                v = pcm_ints(x, self.bits)
                self.sf.write(v if self.bits == "16" else v << 8)
        else:
            self.f.write(pcm_bytes(x, self.bits))

    def close(self) -> None:
        if self.sf is not None:
            self.sf.close()


class _CountingReader:
    """Counts the bytes read through it (the stream size, even on a pipe)."""

    def __init__(self, f) -> None:
        self.f, self.n = f, 0

    def read(self, n: int = -1) -> bytes:
        b = self.f.read(n)
        self.n += len(b)
        return b


def _describe_stream(inp: str) -> dict:
    from ..codec.stereo import MS, split_side  # numpy only: info stays free of torch

    src = sys.stdin.buffer if inp == "-" else open(inp, "rb")  # noqa: SIM115
    with src:
        counter = _CountingReader(src)
        reader = fmt.ContainerReader(counter)
        h = reader.header
        packets = damaged = payload = ms_packets = 0
        side_layers: set[int] = set()
        end = None
        for item in reader:
            if isinstance(item, fmt.Damage):
                damaged += 1
            elif item.kind == fmt.AUDIO:
                packets += 1
                payload += len(item.side) + sum(len(b) for b in item.layers)
                split = split_side(item.side, h.channels)
                if split is not None and split[1].mode == MS:
                    ms_packets += 1
                    side_layers.add(split[1].side_layers or h.num_layers)
            elif item.kind == fmt.END:
                end = item
        total_bytes = counter.n
    samples = end.original_samples if end is not None else h.total_samples
    secs = samples / h.original_rate if samples is not None else None
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
        "payload_bytes": payload,
    }
    if h.channels == 2:  # how the encoder coded the pair (codec/stereo.py)
        d["stereo"] = {"ms_packets": ms_packets, "lr_packets": packets - ms_packets,
                       "side_layers": sorted(min(n, h.num_layers) for n in side_layers)}
    d["bytes"] = total_bytes
    if secs:
        d["kbps"] = 8 * total_bytes / secs / 1000
    return d


@cli.command()
@click.argument("inp", metavar="IN")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@debug_option
@handle_errors
def info(inp, as_json, debug) -> None:
    """Describe an .nwc stream (header, duration, packets, bitrate) without decoding audio."""
    d = _describe_stream(inp)
    if as_json:
        click.echo(json.dumps(d, indent=1))
        return
    dur = f"{d['duration_s']:.3f} s" if d["duration_s"] is not None else "unknown"
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
    click.echo("\n".join(lines))


@cli.command("tiers")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@debug_option
@handle_errors
def tiers_cmd(as_json, debug) -> None:
    """List installed tiers with their measured real bitrate and quality."""
    from ..codec import catalog

    rows = []
    for name, path in sorted(catalog.available().items()):
        doc = json.loads(Path(path).read_text())
        meta = doc.get("meta", {})
        dev = meta.get("dev", {})
        layers = meta.get("dev_layers") or [dev]
        rows.append({"name": name, "sample_rate": doc["sample_rate"],
                     "lpc": bool(doc.get("cascade", {}).get("lpc", False)),
                     "layers": [{k: m.get(k) for k in _TIER_METRICS} for m in layers],
                     "kbps": dev.get("kbps"), "target_kbps": meta.get("target_kbps"),
                     **{k: dev.get(k) for k in _TIER_METRICS[1:]},
                     "parameters": meta.get("parameters"), "path": str(path)})
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


_TIER_METRICS = ("kbps", "pesq_wb", "stoi", "visqol", "si_snr")


@cli.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, help="Output stem: writes OUT.safetensors and OUT.json.")
@click.option("-b", "--bitrate", default="16k", show_default=True,
              help="Target real bitrate; a list (8k,16k,24k) trains one layer per rate.")
@click.option("--lpc", is_flag=True, help="Hybrid codec: an LPC front end before the stages.")
@click.option("--sample-rate", type=click.IntRange(8000, 96000), default=16000,
              show_default=True, help="Rate the tier codes at (44100 for music).")
@click.option("--loss", type=click.Choice(["plain", "psychoacoustic"]), default="plain",
              show_default=True,
              help="psychoacoustic: add the MPEG-1 masking-threshold terms (general audio).")
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
              show_default=True)
@click.option("--plan", type=click.Choice(["fast", "paper"]), default="fast", show_default=True)
@click.option("--channels", type=int, default=128, show_default=True)
@click.option("--code-channels", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Code channels per frame (symbols per frame = code channels x steps).")
@click.option("--batch", type=int, default=8, show_default=True, help="Packets per step.")
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--warmup-steps", type=int, default=200, show_default=True)
@click.option("--ramp-start", type=float, default=2.0, show_default=True,
              help="Initial rate target as a multiple of the final one.")
@click.option("--eval-minutes", type=float, default=10.0, show_default=True)
@click.option("--eval-clips", type=int, default=16, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--run-dir", help="Checkpoint folder (default: .OUT.run beside OUT).")
@click.option("--seed", type=int, default=0)
@quiet_option
@debug_option
@handle_errors
def train(data_dir, out, bitrate, lpc, sample_rate, loss, harp, freeze, name, resume,
          init_from, device, max_steps, max_minutes,
          quantizer, plan, channels, code_channels, batch, lr, warmup_steps, ramp_start,
          eval_minutes, eval_clips, threads, run_dir, seed, quiet, debug) -> None:
    """Train a tier on a folder of audio (files under a `dev` folder form the dev split)."""
    from ..codec.catalog import parse_bitrate
    from ..codec.engine import torch_available

    if not torch_available():
        raise Fatal('nwc train needs torch, which this install lacks: pip install "nwc[train]"')
    from ..codec.train import TrainConfig
    from ..codec.train import train as run

    try:
        rates = [parse_bitrate(b) for b in bitrate.split(",")]
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--bitrate") from None
    if any(b <= a for a, b in zip(rates, rates[1:], strict=False)):
        raise click.BadParameter("layer bitrates must increase", param_hint="--bitrate")
    if freeze and not init_from:
        raise click.UsageError("--freeze needs --init-from")
    bps = rates[-1]
    if not max_steps and not max_minutes:
        raise click.UsageError("give --max-steps or --max-minutes")
    levels = 31 if quantizer == "noise" else 32
    if loss == "psychoacoustic" and lpc:
        raise click.UsageError("--loss psychoacoustic cannot be combined with --lpc")
    cfg = TrainConfig(data=data_dir, out=out, bitrate=bps, layer_bitrates=rates, lpc=lpc,
                      sample_rate=sample_rate, loss=loss,
                      freeze=freeze, name=name or "",
                      max_steps=max_steps, max_minutes=max_minutes, batch=batch, lr=lr,
                      warmup_steps=warmup_steps, ramp_start=ramp_start,
                      eval_minutes=eval_minutes, eval_clips=eval_clips, seed=seed,
                      device=device, threads=threads, resume=resume,
                      init_from=init_from or "", run_dir=run_dir or "",
                      model={"quantizer": quantizer, "levels": levels, "plan": plan,
                             "channels": channels, "narrow": channels // 2,
                             "code_channels": code_channels, "harp": harp})
    run(cfg, progress=not quiet)


# Sub-commands in their own modules register themselves (they need the helpers above).
from . import eval_cmd, truncate_cmd  # noqa: E402, F401


def main() -> None:
    """Console entry point."""
    cli(prog_name="nwc")


if __name__ == "__main__":
    main()
