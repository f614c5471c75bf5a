"""``nwc decode``: an .nwc stream in, audio out in the format OUT names, damage reported.

Arguments and I/O only: ``codec.api.StreamDecoder`` decodes, fills and bounds; this module
reads packets, writes blocks (``pcm_out.py``) and says what was lost.
"""

from __future__ import annotations

import os
import sys

import click

from ..formats import container as fmt
from .audio_io import AtomicOutput
from .batch import batch_options, batched
from .common import (
    Progress,
    debug_option,
    force_option,
    handle_errors,
    label,
    quiet_option,
    say,
    timer,
)
from .device import load_tier
from .pcm_out import FORMATS, PcmWriter, check_format, format_for
from .stdio import std_binary


@click.command()
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
    elapsed = timer()
    sink = AtomicOutput(out, force)
    sink.check(inp)
    out_format = format_for(out, out_format, sink.streaming)
    check_format(out_format, bits, sink.streaming)

    from ..codec.api import StreamDecoder

    src = std_binary("stdin") if inp == "-" else open(inp, "rb")  # noqa: SIM115
    with src:
        reader = fmt.ContainerReader(src)
        h = reader.header
        t = load_tier(h.tier, threads, h.weights_hash)
        dec = StreamDecoder(t, h, rate, pad_truncated=pad, allow_long_gaps=allow_long_gaps,
                            conceal=conceal)
        dec.warm_up()  # before the packets: a live stream's first audio is not held up
        out_rate = dec.out_rate
        prog = Progress(h.duration, quiet, "decode")
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
    say(quiet, f"nwc: decoded {label(inp)} to {label(out)} ({secs:.2f} s, {h.channels} ch, "
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
