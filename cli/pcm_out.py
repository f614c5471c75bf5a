"""Decoded audio out: the format from OUT's extension (or ``--format``), pipe-friendly WAV.

Files go through libsndfile (WAV, FLAC, AIFF, Ogg Vorbis, Opus, MP3) with the stream's tags.
A pipe, a device or stdout gets WAV or raw PCM written here: the WAV header leaves together
with the first audio in one write (a reader that takes the first read as the whole header,
such as ``sox -``, sees both), carries the tags as LIST INFO, and has the streaming sizes
0xFFFFFFFF, which are patched to the real sizes at the end when stdout turns out to be a
regular file (``nwc decode x.nwc - > out.wav``), as sox and opusdec do.
"""

from __future__ import annotations

import struct
from pathlib import Path

import click
import numpy as np

from .audio_io import pcm_bytes, pcm_ints, wav_header
from .tags import to_soundfile

# --format → (libsndfile format, subtype; None: by --bits), and the suffixes that imply it.
FORMATS: dict[str, tuple[str, str | None]] = {
    "wav": ("WAV", None), "flac": ("FLAC", None), "aiff": ("AIFF", None),
    "ogg": ("OGG", "VORBIS"), "opus": ("OGG", "OPUS"), "mp3": ("MP3", "MPEG_LAYER_III"),
    "raw": ("RAW", None)}
SUFFIXES = {".wav": "wav", ".wave": "wav", ".flac": "flac", ".aif": "aiff", ".aiff": "aiff",
            ".ogg": "ogg", ".oga": "ogg", ".opus": "opus", ".mp3": "mp3", ".raw": "raw",
            ".pcm": "raw"}
STREAMABLE = ("wav", "raw")
_SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}


def format_for(out: str, out_format: str | None, streaming: bool) -> str:
    """The output format: ``--format``, else OUT's suffix; a pipe or device defaults to wav."""
    if out_format is not None:
        return out_format
    suffix = Path(out).suffix.lower()
    if suffix in SUFFIXES:
        return SUFFIXES[suffix]
    if streaming or not suffix:
        return "wav"
    raise click.UsageError(
        f"cannot tell the format of {out!r} from {suffix!r}; name it .wav, .flac, .aiff, .ogg, "
        f".opus, .mp3 or .raw, or give --format (other formats: "
        f"`nwc decode IN - | ffmpeg -i - {Path(out).name}`)")


def check_format(out_format: str, bits: str, streaming: bool) -> None:
    """Usage errors of a format choice, before any work."""
    if streaming and out_format not in STREAMABLE:
        raise click.BadParameter(f"{out_format} cannot be streamed to a pipe or device; use "
                                 "wav or raw", param_hint="--format")
    if out_format in ("flac", "aiff") and bits == "float":
        raise click.BadParameter(f"{out_format} cannot hold float samples", param_hint="--bits")


class PcmWriter:
    """Writes decoded (frames, channels) float blocks in the chosen format."""

    def __init__(self, f, out_format: str, bits: str, rate: int, channels: int,
                 streaming: bool, tags: dict[str, str] | None = None) -> None:
        import soundfile as sf

        self.f, self.bits, self.frames, self.channels = f, bits, 0, channels
        self.sf = None
        self.header: bytes | None = None    # a streamed WAV header not yet written
        self.header_len = 0
        self.unexported: list[str] = []     # tags the output format cannot hold
        tags = tags or {}
        if not streaming and out_format != "raw":
            fmt, subtype = FORMATS[out_format]
            try:
                self.sf = sf.SoundFile(f, "w", rate, channels, subtype or _SUBTYPES[bits],
                                       format=fmt)
            except (sf.LibsndfileError, RuntimeError) as e:
                raise click.ClickException(f"cannot write {out_format} at {rate} Hz, "
                                           f"{channels} ch ({e}); try --rate 48000 or another "
                                           "format") from None
            self.unexported = to_soundfile(self.sf, tags)
        elif out_format == "wav":
            self.header = wav_header(rate, channels, bits, None, tags)
            self.header_len = len(self.header)
        else:
            self.unexported = list(tags)
        self.width = {"16": 2, "24": 3, "float": 4}[bits] * channels

    def write(self, x: np.ndarray) -> None:
        if x.shape[0] == 0:
            return
        self.frames += x.shape[0]
        if self.sf is not None:
            # soundfile writes int32 arrays by their top 24 bits for PCM_24.
            if self.bits == "float" or self.sf.format not in ("WAV", "FLAC", "AIFF"):
                self.sf.write(x)
            else:
                v = pcm_ints(x, self.bits)
                self.sf.write(v if self.bits == "16" else v << 8)
            return
        data = pcm_bytes(x, self.bits)
        if self.header is not None:  # header and first audio in one write
            data, self.header = self.header + data, None
        self.f.write(data)

    def __enter__(self) -> PcmWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # Close soundfile's writer before the file under it: closing it later (at garbage
        # collection) would seek a closed file and print "Exception ignored" tracebacks.
        if exc_type is not None:
            try:
                self.close()
            except Exception:  # noqa: BLE001 - the first failure is the one to report
                pass

    def close(self) -> None:
        if self.sf is not None:
            if not self.sf.closed:
                self.sf.close()
            return
        if self.header is not None:  # no audio at all: the header alone
            self.f.write(self.header)
            self.header = None
        if self.header_len:
            self._patch_sizes()

    def _patch_sizes(self) -> None:
        """Real RIFF and data sizes when the bytes landed in a regular file."""
        regular = getattr(self.f, "regular_file", None)
        target = regular() if regular is not None else None
        data = self.frames * self.width
        if target is None or self.header_len + data > 0xFFFFFFFF:
            return
        target.flush()
        end = target.tell()
        start = end - self.header_len - data  # where the header began (after earlier bytes)
        if start < 0:
            return
        target.seek(start + 4)
        target.write(struct.pack("<I", self.header_len - 8 + data))
        target.seek(start + self.header_len - 4)
        target.write(struct.pack("<I", data))
        target.seek(end)
        target.flush()
