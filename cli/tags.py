"""Tags that travel: from the input file into the stream, and from the stream into the output.

Keys follow the Vorbis-comment convention (FLAC, Ogg, opusenc): case-insensitive, stored
upper-case. The stream holds one value per key, so a key given twice keeps both values joined
by ``"; "`` (and says so). Files reach and leave nwc through libsndfile, which knows ten
fields (FLAC/Ogg comments, WAV LIST INFO, ID3 where it reads them): those are imported and
exported; other keys stay in the .nwc stream (``nwc info`` shows them). WAV written by nwc
itself (pipes) carries the same fields in a LIST INFO chunk before its audio.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

import click

# Vorbis key ↔ libsndfile string field.
SF_FIELDS = {"TITLE": "title", "ARTIST": "artist", "ALBUM": "album", "DATE": "date",
             "COMMENT": "comment", "GENRE": "genre", "TRACKNUMBER": "tracknumber",
             "COPYRIGHT": "copyright", "LICENSE": "license", "ENCODER": "software"}
# Vorbis key ↔ RIFF LIST INFO chunk id (what libsndfile writes for the same fields).
RIFF_INFO = {"TITLE": b"INAM", "ARTIST": b"IART", "ALBUM": b"IPRD", "DATE": b"ICRD",
             "COMMENT": b"ICMT", "GENRE": b"IGNR", "TRACKNUMBER": b"ITRK",
             "COPYRIGHT": b"ICOP", "ENCODER": b"ISFT"}
SHORTHANDS = ("title", "artist", "album", "date", "comment")
JOIN = "; "


def tag_options(fn):
    """``--title --artist --album --date --comment`` and repeatable ``--tag KEY=VALUE``."""
    fn = click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE",
                      help="Add a tag (repeatable; keys are case-insensitive).")(fn)
    fn = click.option("--no-input-tags", is_flag=True,
                      help="Do not copy the input file's tags into the stream.")(fn)
    for name in reversed(SHORTHANDS):
        fn = click.option(f"--{name}", f"tag_{name}", metavar="TEXT",
                          help=f"Set the {name.upper()} tag.")(fn)
    return fn


def parse_pairs(pairs: Iterable[str], hint: str = "--tag") -> list[tuple[str, str]]:
    """``KEY=VALUE`` strings to (KEY upper-cased, value) pairs; bad ones are a usage error."""
    out = []
    for t in pairs:
        k, sep, v = t.partition("=")
        if not sep or not k.strip():
            raise click.BadParameter(f"{t!r} is not KEY=VALUE", param_hint=hint)
        out.append((k.strip().upper(), v))
    return out


def merge(*groups: Iterable[tuple[str, str]]) -> tuple[dict[str, str], list[str]]:
    """Pairs to one value per key: a later group replaces a key of an earlier one (the
    command line over the input file); a key repeated within a group keeps every value."""
    out: dict[str, str] = {}
    joined: list[str] = []
    for group in groups:
        mine: dict[str, list[str]] = {}
        for k, v in group:
            mine.setdefault(k, []).append(v)
        for k, vs in mine.items():
            if len(vs) > 1:
                joined.append(k)
            out[k] = JOIN.join(vs)
    return out, joined


def from_soundfile(sfile) -> list[tuple[str, str]]:
    """The tags libsndfile read from an input file."""
    out = []
    for key, attr in SF_FIELDS.items():
        try:
            v = getattr(sfile, attr)
        except (AttributeError, RuntimeError):
            continue
        if v:
            out.append((key, v))
    return out


def to_soundfile(sfile, tags: dict[str, str]) -> list[str]:
    """Write the fields libsndfile can hold; returns the keys it could not."""
    left = []
    for k, v in tags.items():
        attr = SF_FIELDS.get(k.upper())
        if attr is None:
            left.append(k)
            continue
        try:
            setattr(sfile, attr, v)
        except (RuntimeError, AttributeError, ValueError):
            left.append(k)
    return left


def riff_info(tags: dict[str, str]) -> bytes:
    """A RIFF ``LIST``/``INFO`` chunk with the tags it has ids for (empty if none)."""
    body = b"INFO"
    for k, v in tags.items():
        cid = RIFF_INFO.get(k.upper())
        if cid is None:
            continue
        data = v.encode("utf-8") + b"\0"
        body += cid + struct.pack("<I", len(data)) + data + (b"\0" if len(data) & 1 else b"")
    return b"" if body == b"INFO" else b"LIST" + struct.pack("<I", len(body)) + body


def parse_riff_info(body: bytes) -> list[tuple[str, str]]:
    """The tags of a ``LIST`` chunk's body (``INFO`` lists only)."""
    if body[:4] != b"INFO":
        return []
    ids = {v: k for k, v in RIFF_INFO.items()}
    out, pos = [], 4
    while pos + 8 <= len(body):
        cid, size = body[pos:pos + 4], struct.unpack("<I", body[pos + 4:pos + 8])[0]
        data = body[pos + 8:pos + 8 + size]
        pos += 8 + size + (size & 1)
        if cid in ids:
            v = data.split(b"\0", 1)[0].decode("utf-8", "replace").strip()
            if v:
                out.append((ids[cid], v))
    return out
