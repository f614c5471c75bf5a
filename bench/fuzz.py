#!/usr/bin/env python3
"""Decoder fuzz campaign: mutated real .nwc streams through the library decode path.

Codes two short signals (16 kHz mono, and 44.1 kHz stereo, which exercises the resamplers)
with one tier, then decodes many mutated copies of the streams in-process, exactly as
``nwc decode`` does (``ContainerReader`` → ``StreamDecoder.push`` → ``finish``), and checks:

* the only exceptions are the documented header errors (``FormatError`` and its subclasses,
  ``TierError``, ``CodecError`` from the decoder's header check), and only when the header
  bytes were damaged; anything else is a *crash*;
* with an intact header the output has exactly the announced length and is finite;
* every packet whose bytes survived intact is decoded (the count predicted from where the
  intact packets lie and the decoder's sequence rule), and, for the 16 kHz stream, the samples
  it alone determines equal the clean decode;
* an END packet that survived is seen, and a decode reporting no damage at all equals the
  clean decode sample for sample (no silent corruption);
* LPC tiers: after a discontinuity the synthesis filter's memory differs from the clean
  decode's, so intact packets must match from ``RECOVERY`` samples (one packet) after it on;
  the longest recovery seen is reported, in samples;
* whatever the header says, the output is at most what the packets justify plus the
  decoder's gap limit (``codec/limits.py``), and every input decodes within the memory cap.

Mutations: bit flips, truncation, inserted garbage (sometimes holding sync/magic bytes),
overwritten ranges, dropped/swapped/duplicated packets, combinations of those, and
"reframed" packets whose side info or layer payloads are corrupted *with a valid CRC* (what
no CRC can catch: the codec must cope on its own), and the hostile cases of issue 20 as
seeds: huge sequence jumps and forged END lengths with valid CRCs, headers declaring huge
lengths, and sync-marker floods. Usage::

    nice python bench/fuzz.py [--n 100000] [--seed 0] [--tier NAME | --lpc] [--mem-cap-mb N]

Without ``--tier`` a small random-initialised tier is built in-process (fast; no weights
needed; ``--lpc``: an LPC hybrid one). Exits 1 if any input crashed or broke an invariant.
"""

from __future__ import annotations

import argparse
import io
import random
import resource
import struct
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from nwc.codec import limits
from nwc.codec import tier as tiers
from nwc.codec.api import CodecError, StreamDecoder, StreamEncoder, header_for
from nwc.codec.tier import TierError
from nwc.formats.container import (
    AUDIO,
    END,
    MAGIC,
    SYNC,
    ContainerReader,
    ContainerWriter,
    FormatError,
    Packet,
    encode_header,
    encode_packet,
)

HEADER_ERRORS = (FormatError, TierError, CodecError)
RECOVERY_PACKETS = 1  # LPC filter memory must have recovered one packet after a loss


# --------------------------------------------------------------------------- references


def signal(seconds: float, rate: int, channels: int, seed: int) -> np.ndarray:
    """Speech-like test audio: harmonics with a gliding pitch, syllable-rate AM, some noise."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    out = np.zeros((n, channels), np.float32)
    for c in range(channels):
        f0 = rng.uniform(100, 220) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
        phase = 2 * np.pi * np.cumsum(f0) / rate
        x = sum(np.sin(k * phase) / k for k in range(1, 10))
        x = x * (0.55 + 0.45 * np.sin(2 * np.pi * rng.uniform(3, 6) * t))
        x = x + 0.05 * rng.standard_normal(n)
        out[:, c] = 0.3 * x / max(float(np.abs(x).max()), 1e-9)
    return out


def random_tier(name: str = "fuzz", seed: int = 0):
    """A tiny random-initialised tier with tables fitted to its own symbols."""
    from nwc.codec import entropy
    from nwc.codec.framing import Framing, split_frames
    from nwc.codec.gain import gain_code, gain_value
    from nwc.codec.model import NWC, NWCConfig
    from nwc.codec.quantize import channel_histogram

    torch.manual_seed(seed)
    cfg = NWCConfig(channels=8, narrow=4, code_channels=2, levels=7)
    model = NWC(cfg).eval()
    with torch.no_grad():
        model.encoder[-1].weight.mul_(16.0)
        model.encoder[-1].bias.zero_()
    f = Framing()
    x = signal(3.0, 16000, 1, seed + 1)[:, 0]
    span = f.packet_span(f.packet_frames)
    hist = np.zeros((cfg.code_channels, cfg.levels), np.int64)
    for s in range(0, x.shape[0] - span, f.packet_hop):
        seg = x[s:s + span] / gain_value(gain_code(x[s:s + span]))
        with torch.inference_mode():
            lat = model.encode(torch.from_numpy(split_frames(seg, f, f.packet_frames))).numpy()
        hist += channel_histogram(model.quantizer.to_symbols(lat), cfg.levels)
    t = tiers.build(name, 16000, f, cfg, entropy.tables_from_histogram(hist),
                    state=model.state_dict())
    t.weights_sha256 = "0" * 64
    return t


def random_lpc_tier(name: str = "fuzz-lpc", seed: int = 1):
    """A tiny random-initialised two-stage LPC hybrid with tables fitted to its symbols."""
    from nwc.codec.cascade import Cascade, CascadeConfig
    from nwc.codec.framing import Framing
    from nwc.codec.model import NWCConfig
    from nwc.train.data import PacketSampler
    from nwc.train.export import code_tables

    torch.manual_seed(seed)
    cfg = CascadeConfig(nwc=NWCConfig(channels=8, narrow=4, code_channels=2, levels=7),
                        stages=2, lpc=True)
    model = Cascade(cfg).eval()
    with torch.no_grad():
        for stage in model.stages:
            stage.encoder[-1].weight.mul_(16.0)
            stage.encoder[-1].bias.zero_()
    f = Framing()
    sampler = PacketSampler([signal(4.0, 16000, 1, seed + 100)[:, 0]], f)
    tables, lsf_tables = code_tables(model, sampler, torch.device("cpu"), 16000, n_packets=32)
    t = tiers.build(name, 16000, f, cfg, tables, state=model.state_dict(),
                    lsf_tables=lsf_tables)
    t.weights_sha256 = "1" * 64
    return t


@dataclass
class Reference:
    """A clean stream, where its packets lie, and its clean decode."""

    name: str
    tier: object
    data: bytes
    header_len: int
    objects: list[Packet]         # the packets in stream order, END last
    packets: list[bytes]          # the same, encoded
    spans: list[tuple[int, int]]  # their byte ranges in ``data``
    seq_of: dict[bytes, tuple[int, int, int]] = field(default_factory=dict)  # → seq, kind, gran
    n: int = 0
    channels: int = 1
    rate: int = 16000             # the input's (original) rate
    exact: bool = True            # output rate == tier rate: per-sample region checks apply
    clean: np.ndarray | None = None


def make_reference(tier, name: str, x: np.ndarray, rate: int) -> Reference:
    enc = StreamEncoder(tier, rate, x.shape[1])
    packets = enc.push(x) + enc.finish()
    packets.append(Packet(END, enc.next_seq, enc.coded_samples, b"", [], enc.input_samples))
    buf = io.BytesIO()
    w = ContainerWriter(buf, header_for(tier, rate, x.shape[1], x.shape[0]))
    header_len = buf.tell()
    raw, spans = [], []
    for p in packets:
        start = buf.tell()
        w.write(p)
        raw.append(encode_packet(p))
        spans.append((start, buf.tell()))
    ref = Reference(name, tier, buf.getvalue(), header_len, packets, raw, spans,
                    {b: (p.seq, p.kind, p.granule) for b, p in zip(raw, packets, strict=True)},
                    x.shape[0], x.shape[1], rate, rate == tier.sample_rate)
    out = decode(ref, ref.data)
    if out.error or out.problems or out.stats.damaged or out.y.shape != (ref.n, ref.channels):
        raise RuntimeError(f"clean stream {name} does not decode cleanly: "
                           f"{out.error or out.problems or out.stats}")
    ref.clean = out.y
    return ref


# --------------------------------------------------------------------------- mutations

Mutator = Callable[[random.Random, Reference, bytes], bytes]


def _flip_bits(rng: random.Random, ref: Reference, d: bytes) -> bytes:
    if not d:
        return d
    b = bytearray(d)
    for _ in range(rng.choice([1, 1, 1, 2, 3, 8])):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def _flip_bits_after_header(rng: random.Random, ref: Reference, d: bytes) -> bytes:
    if len(d) <= ref.header_len:
        return _flip_bits(rng, ref, d)
    b = bytearray(d)
    for _ in range(rng.choice([1, 1, 2, 5])):
        i = rng.randrange(ref.header_len, len(b))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def _truncate(rng: random.Random, ref: Reference, d: bytes) -> bytes:
    return d[:rng.randrange(len(d) + 1)]


def _garbage(rng: random.Random, n: int) -> bytes:
    g = bytearray(rng.randbytes(n))
    if n >= 8 and rng.random() < 0.5:  # plant markers the scanner will look at
        marker = rng.choice([SYNC, MAGIC, SYNC + b"\xff\xff\xff\xff", SYNC + b"\x20\x00\x00\x00"])
        i = rng.randrange(max(1, n - len(marker)))
        g[i:i + len(marker)] = marker[: n - i]
    return bytes(g)


def _insert(rng: random.Random, ref: Reference, d: bytes) -> bytes:
    lo = min(ref.header_len, len(d)) if rng.random() < 0.9 else 0
    i = rng.randrange(lo, len(d) + 1)
    return d[:i] + _garbage(rng, rng.choice([1, 3, 4, 12, 64, 300])) + d[i:]


def _overwrite(rng: random.Random, ref: Reference, d: bytes) -> bytes:
    if not d:
        return d
    i = rng.randrange(len(d))
    n = rng.choice([1, 4, 16, 100])
    return d[:i] + _garbage(rng, min(n, len(d) - i)) + d[i + n:]


def _audio_spans(ref: Reference) -> list[tuple[int, int]]:
    return ref.spans[:-1]


def _drop(rng: random.Random, ref: Reference, d: bytes) -> bytes:
    a, b = rng.choice(ref.spans)
    return d[:a] + d[b:]


def _swap(rng: random.Random, ref: Reference, d: bytes) -> bytes:
    spans = _audio_spans(ref)
    if len(spans) < 2:
        return _drop(rng, ref, d)
    i, j = sorted(rng.sample(range(len(spans)), 2))
    (a0, a1), (b0, b1) = spans[i], spans[j]
    return d[:a0] + d[b0:b1] + d[a1:b0] + d[a0:a1] + d[b1:]


def _duplicate(rng: random.Random, ref: Reference, d: bytes) -> bytes:
    a, b = rng.choice(_audio_spans(ref) or ref.spans)
    at = rng.choice([s[0] for s in ref.spans] + [b])
    return d[:at] + d[a:b] + d[at:]


def _reframe(rng: random.Random, ref: Reference, d: bytes) -> bytes:
    """Corrupt one AUDIO packet's side info or payload and give it a valid CRC again."""
    spans = _audio_spans(ref)
    if not spans:
        return _flip_bits(rng, ref, d)
    k = rng.randrange(len(spans))
    a, b = spans[k]
    p = ref.objects[k]
    side, layers = bytearray(p.side), [bytearray(x) for x in p.layers]
    what = rng.randrange(7)
    if what == 0 and layers[0]:    # flip payload bits
        for _ in range(rng.choice([1, 4, 32])):
            i = rng.randrange(len(layers[0]))
            layers[0][i] ^= 1 << rng.randrange(8)
    elif what == 1:                # random payload of a random length
        layers[0] = bytearray(rng.randbytes(rng.choice([0, 3, 4, 8, 64, 1000, 5000])))
    elif what == 2:                # cut the payload
        layers[0] = layers[0][: rng.randrange(len(layers[0]) + 1)]
    elif what == 3:                # no layer at all
        layers = []
    elif what == 4:                # side info of the wrong length
        side = bytearray(rng.randbytes(rng.choice([0, 1, 2, 7, 300])))
    elif what == 5:                # extreme gains
        side = bytearray([rng.choice([0, 1, 255])] * len(side))
    else:                          # zeroed payload
        layers[0] = bytearray(len(layers[0]))
    q = Packet(AUDIO, p.seq, p.granule, bytes(side), [bytes(x) for x in layers])
    return d[:a] + encode_packet(q) + d[b:]


def _seq_jump(rng: random.Random, ref: Reference, d: bytes) -> bytes:
    """An AUDIO packet moved 2**16.. 2**31 packets ahead, with a valid CRC (issue 20)."""
    spans = _audio_spans(ref)
    k = rng.randrange(len(spans))
    a, b = spans[k]
    p = ref.objects[k]
    hop = ref.tier.framing.packet_hop
    seq = p.seq + rng.choice([1 << 16, 1 << 20, (1 << 31) - 1 - p.seq])
    q = Packet(AUDIO, seq, p.granule + (seq - p.seq) * hop, p.side, p.layers)
    return d[:a] + encode_packet(q) + d[b:]


def _forged_end(rng: random.Random, ref: Reference, d: bytes) -> bytes:
    """END with a huge length its own seq seems to vouch for (valid CRC; issue 20)."""
    a, b = ref.spans[-1]
    hop = ref.tier.framing.packet_hop
    seq = rng.choice([1 << 13, 1 << 20, (1 << 31) - 1])
    g = seq * hop
    orig = round(g * ref.rate / ref.tier.sample_rate)
    return d[:a] + encode_packet(Packet(END, seq, g, b"", [], orig)) + d[b:]


def _header_length(rng: random.Random, ref: Reference, d: bytes) -> bytes:
    """The header rewritten (valid CRC) to declare a huge total_samples (issue 20)."""
    h = ContainerReader(io.BytesIO(ref.data)).header
    h.total_samples = rng.choice([10**8, 1 << 40, (1 << 64) - 2])
    return encode_header(h) + d[ref.header_len:]


def _sync_flood(rng: random.Random, ref: Reference, d: bytes) -> bytes:
    """Sync markers claiming long bodies, inserted between packets (SPEC 6.2, issue 20)."""
    n = rng.choice([64, 1024, 16384])
    flood = b"".join(SYNC + struct.pack("<I", rng.choice([14, 4096, 65536, 1 << 22]))
                     for _ in range(n // 8))
    at = rng.choice([s[0] for s in ref.spans])
    return d[:at] + flood + d[at:]


CRC_MUTATORS: dict[str, Mutator] = {
    "bitflip": _flip_bits,
    "bitflip-body": _flip_bits_after_header,
    "truncate": _truncate,
    "insert": _insert,
    "overwrite": _overwrite,
    "drop": _drop,
    "swap": _swap,
    "duplicate": _duplicate,
}
HOSTILE: dict[str, Mutator] = {
    "seq-jump": _seq_jump,
    "forged-end": _forged_end,
    "header-length": _header_length,
    "sync-flood": _sync_flood,
}
MUTATORS: dict[str, Mutator] = {**CRC_MUTATORS, "reframe": _reframe, **HOSTILE}


# need the clean stream's packet spans
STRUCTURAL = ("drop", "swap", "duplicate", "reframe", *HOSTILE)


def mutate(rng: random.Random, ref: Reference) -> tuple[str, bytes]:
    """One mutated copy of ``ref.data``: (mutation name, bytes)."""
    names = [rng.choice(sorted(MUTATORS))]
    if rng.random() < 0.2:  # a combination: byte-level damage on top
        names += rng.sample(sorted(set(CRC_MUTATORS) - set(STRUCTURAL)), rng.choice([1, 2]))
    d = ref.data
    for name in names:
        d = MUTATORS[name](rng, ref, d)
    return "+".join(names), d


# --------------------------------------------------------------------------- decoding


@dataclass
class Outcome:
    """What decoding one input did."""

    kind: str                       # "clean", "damaged", "rejected" or "crash"
    seconds: float
    error: str | None = None        # exception type and message (rejected / crash)
    problems: list[str] = field(default_factory=list)  # broken invariants
    y: np.ndarray | None = None
    stats: object | None = None
    recovery: int = 0               # LPC: samples until intact packets matched again


def _expected(ref: Reference, d: bytes) -> tuple[list[int], bool]:
    """Seqs of the intact packets the decoder must accept, and whether END is reachable."""
    hits = []
    for raw, (seq, kind, _) in ref.seq_of.items():
        i = d.find(raw, ref.header_len)
        while i >= 0:
            hits.append((i, seq, kind))
            i = d.find(raw, i + 1)
    accepted, expect = [], 0
    for _, seq, kind in sorted(hits):
        if kind == END:
            return accepted, True
        if seq >= expect:
            accepted.append(seq)
            expect = seq + 1
    return accepted, False


def decode(ref: Reference, d: bytes, crc_only: bool = True) -> Outcome:
    """Decode ``d`` like `nwc decode`, classify the outcome and check the invariants."""
    t0 = time.perf_counter()
    header_intact = d[:ref.header_len] == ref.data[:ref.header_len]
    try:
        reader = ContainerReader(io.BytesIO(d))
        h = reader.header
        tier = ref.tier if h.tier == ref.tier.name else tiers.load(h.tier)
        dec = StreamDecoder(tier, h)
    except HEADER_ERRORS as e:
        out = Outcome("rejected", time.perf_counter() - t0, f"{type(e).__name__}: {e}")
        if header_intact:
            out.problems.append("intact header rejected")
        return out
    except Exception as e:  # noqa: BLE001 - that is what we are looking for
        return Outcome("crash", time.perf_counter() - t0,
                       f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
    try:  # as `nwc decode` does: bounded blocks, then the cut of a shorter END
        parts = [b for item in reader for b in dec.feed(item)]
        parts += dec.drain()
        y = np.concatenate(parts)
        y = y[: y.shape[0] - dec.stats.cut]
    except Exception as e:  # noqa: BLE001
        return Outcome("crash", time.perf_counter() - t0,
                       f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
    st = dec.stats
    damaged = bool(st.damaged or st.lost_samples or not st.ended)
    out = Outcome("damaged" if damaged else "clean", time.perf_counter() - t0, y=y, stats=st)
    # Bounded whatever the stream declares: twice the audio plus the gap limit (limits.py).
    bound = 2 * ref.n + (limits.MAX_GAP_SECONDS + 1) * ref.rate
    if y.shape[0] > bound:
        out.problems.append(f"output of {y.shape[0]} samples over the bound {bound}")
    if not header_intact:
        return out
    if y.shape != (ref.n, ref.channels):
        out.problems.append(f"length {y.shape} != announced {(ref.n, ref.channels)}")
        return out
    if not np.isfinite(y).all():
        out.problems.append("non-finite output")
    if ref.clean is None:
        return out
    accepted, end_seen = _expected(ref, d)
    if st.packets < len(accepted) or (crc_only and st.packets != len(accepted)):
        out.problems.append(f"decoded {st.packets} packets, expected {len(accepted)} intact")
    if crc_only and st.ended != end_seen:
        out.problems.append(f"END seen={st.ended}, intact END reachable={end_seen}")
    if crc_only and not damaged and not np.array_equal(y, ref.clean):
        out.problems.append("no damage reported but output differs from the clean decode")
    if ref.exact:
        f = ref.tier.framing
        since, prev = 0, -1  # LPC: where the filter memory last lost track of the clean one
        for seq in accepted:
            start = seq * f.packet_hop
            if ref.tier.lpc and seq != prev + 1:
                since = start
            prev = seq
            granule = ref.seq_of[ref.packets[seq]][2]
            a, b = start + f.overlap, min(start + f.packet_hop, granule)
            if a >= b:
                continue
            bad = np.nonzero(np.abs(y[a:b] - ref.clean[a:b]).max(axis=1) > 1e-6)[0]
            if not bad.size:
                continue
            if ref.tier.lpc and since:  # samples the memory took to recover (so far)
                out.recovery = max(out.recovery, a + int(bad[-1]) + 1 - since)
                if a + bad[-1] < since + RECOVERY_PACKETS * f.packet_hop:
                    continue
            out.problems.append(f"intact packet {seq} decodes differently")
    return out


# --------------------------------------------------------------------------- campaign


@dataclass
class Report:
    tried: int = 0
    outcomes: Counter = field(default_factory=Counter)
    crashes: Counter = field(default_factory=Counter)
    problems: Counter = field(default_factory=Counter)
    max_seconds: float = 0.0      # wall time of the slowest input (a loaded machine inflates it)
    max_cpu: float = 0.0          # CPU time of the most expensive input (what the decode costs)
    slowest: str = ""             # that input: index, reference, mutation
    max_recovery: int = 0         # LPC filter memory, samples
    examples: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.crashes or self.problems)


def campaign(refs: list[Reference], n: int, seed: int, progress: bool = False,
             max_minutes: float = 0.0) -> Report:
    rng = random.Random(seed)
    rep = Report()
    t_last = t_start = time.time()
    for i in range(n):
        if max_minutes and time.time() - t_start > 60 * max_minutes:
            break  # reported as the count actually tried
        ref = refs[i % len(refs)]
        name, d = mutate(rng, ref)
        c0 = time.process_time()
        out = decode(ref, d, crc_only="reframe" not in name)
        cpu = time.process_time() - c0
        if cpu > rep.max_cpu:
            rep.max_cpu, rep.slowest = cpu, f"#{i} {ref.name} {name}"
        out.y = None  # keep no audio around: memory stays what one decode needs
        rep.tried += 1
        rep.outcomes[out.kind] += 1
        rep.max_seconds = max(rep.max_seconds, out.seconds)
        rep.max_recovery = max(rep.max_recovery, out.recovery)
        if out.kind == "crash":
            rep.crashes[out.error.split(":")[0]] += 1
        for p in out.problems:
            rep.problems[f"{name}: {p}"] += 1
        if (out.kind == "crash" or out.problems) and len(rep.examples) < 5:
            rep.examples.append(f"#{i} {ref.name} {name}: {out.error or out.problems}")
        if progress and time.time() - t_last > 10:
            print(f"  {i + 1}/{n} {dict(rep.outcomes)}", file=sys.stderr, flush=True)
            t_last = time.time()
    return rep


def references(tier) -> list[Reference]:
    hop = tier.framing.packet_hop
    return [make_reference(tier, "16k-mono-2s", signal(2.0, 16000, 1, 1), 16000),
            make_reference(tier, "44k-stereo-1.5s", signal(1.5, 44100, 2, 2), 44100),
            # its last packet holds only the final frame overlap (32 samples)
            make_reference(tier, "16k-mono-short-tail",
                           signal((2 * hop + tier.framing.overlap) / 16000, 16000, 1, 3),
                           16000)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="mutated inputs to try")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tier", help="installed tier to use (default: a tiny random tier)")
    ap.add_argument("--lpc", action="store_true", help="a tiny random LPC hybrid tier")
    ap.add_argument("--max-minutes", type=float, default=0.0,
                    help="stop early after this long (the report says how many were tried)")
    ap.add_argument("--mem-cap-mb", type=int, default=0,
                    help="address-space cap (RLIMIT_AS) once the references are made")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    tier = tiers.load(args.tier) if args.tier else random_lpc_tier() if args.lpc \
        else random_tier()
    refs = references(tier)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if args.mem_cap_mb:
        cap = args.mem_cap_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    t0 = time.time()
    rep = campaign(refs, args.n, args.seed, progress=True, max_minutes=args.max_minutes)
    wall = time.time() - t0
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"tier {tier.name}: tried {rep.tried} mutated inputs in {wall:.1f} s "
          f"(seed {args.seed})")
    for kind, label in (("clean", "decoded cleanly"), ("damaged", "decoded, damage reported"),
                        ("rejected", "rejected header"), ("crash", "crashes")):
        print(f"  {label:<26}{rep.outcomes[kind]:>8}")
    for err, k in rep.crashes.most_common():
        print(f"    crash {err}: {k}")
    print(f"  {'invariant violations':<26}{sum(rep.problems.values()):>8}")
    for p, k in rep.problems.most_common(10):
        print(f"    {p}: {k}")
    print(f"  max time per input        {rep.max_seconds * 1000:>7.1f} ms wall, "
          f"{rep.max_cpu * 1000:.1f} ms CPU ({rep.slowest})")
    print(f"  peak RSS                  {peak_rss / 1024:>7.0f} MiB (after the clean "
          f"references: {base_rss / 1024:.0f} MiB; cap {args.mem_cap_mb or '-'} MiB)")
    if tier.lpc:
        print(f"  LPC memory recovery       {rep.max_recovery:>7d} samples at most "
              f"(limit {RECOVERY_PACKETS * tier.framing.packet_hop})")
    for e in rep.examples:
        print(f"  example {e}", file=sys.stderr)
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main())
