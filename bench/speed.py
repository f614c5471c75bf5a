#!/usr/bin/env python3
"""Speed benchmark: how fast, how lean and how late every nwc tier is, next to Opus.

For each tier (``nwc tiers --json``, or ``--tiers``) and each test length (speech from a
corpus folder, concatenated into a temporary folder), it measures:

* real-time factors (audio seconds per wall second) of encode and decode
  - in a warm process: ``nwc.codec.api`` after a warm-up, at 1 thread and at all threads;
  - end to end through the CLI (``nwc encode IN OUT``, process start included);
* peak memory (max RSS of the CLI process, from ``/usr/bin/time``);
* time to the first output byte with the CLI in a pipe (``nwc encode - -``, ``nwc decode - -``);
* live latency: a WAV fed at real-time pace through ``nwc encode - - | nwc decode - -``,
  time from feeding a sample to hearing it (first sample of the first packet, and the worst
  sample in steady state), against the algorithmic latency of the framing;
* the same per packet size (``--packet-frames``, default 1,2,4,8,16): first byte and first
  packet from a cold start, and a live encoder's packets against when their first and their
  last needed sample went in;
* FLOPs per audio second of each network (conv/matmul MACs x 2, from the modules' shapes),
  against this machine's measured 1-thread matmul rate;
* Opus (``opusenc``/``opusdec``, at the tier's nominal bitrate) on the same files in the same
  run, and the nwc/Opus ratios;
* every anchor codec of ``bench/quality.py`` (its own command lines, one ladder rung per
  ``--anchor-kbps`` target): encode and decode timed apart, one thread, peak RSS per step,
  and a table of all systems with their ratio to Opus.

``--memory-hours H`` instead streams a long synthetic talk (corpus speech repeated) through
``nwc encode - - | nwc decode - -`` and reports each process's peak RSS at 10 minutes and at
H hours: flat memory in input length; it also codes the same audio file to file and checks
that the piped encoder wrote the same packets.

Usage::

    python -m bench.speed [--tiers a,b] [--lengths 60,600] [--anchors all|none|a,b]
                          [--anchor-kbps 16,24] [--out-md FILE]
    python -m bench.speed --memory-hours 1 [--tiers speech-16k]
    python -m bench.speed --quick --corpus DIR        # seconds-long smoke run (tests)

(``python bench/speed.py ...`` runs the same.)

Progress goes to stderr; stdout carries the Markdown tables and notes only.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import io
import os
import platform
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from nwc.formats.container import (
    AUDIO,
    PREAMBLE_BYTES,
    SYNC,
    ContainerReader,
    Packet,
    header_length,
)

# As the CLI does for --threads > 1 (cli/batch.py): libgomp's default spin-waiting makes
# multi-threaded runs of these small convolutions erratic and far slower on small VMs.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

if not __package__:  # `python bench/speed.py`: import the bench package beside it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "bench"
from . import quality  # noqa: E402 - the anchors' systems and command lines
from .common import ToolError, installed_tiers, log  # noqa: E402

SR = 16000
BLOCK = 1 << 15          # PCM frames per push, as the CLI reads files
WAV_HEADER = 44
TIMEOUT_S = 1800
OPUS_LATENCY_MS = 26.5   # opusenc default: 20 ms frames + 6.5 ms look-ahead (RFC 6716)


# --------------------------------------------------------------------------------------
# Test audio


def corpus_files(corpus: Path) -> list[Path]:
    files = sorted(p for p in corpus.rglob("*.wav") if p.is_file())
    if not files:
        raise SystemExit(f"{corpus}: no .wav files")
    return files


def speech(files: list[Path], seconds: float) -> np.ndarray:
    """``seconds`` of 16 kHz mono speech: corpus files in sorted order, end to end, repeated
    from the start if the corpus is shorter."""
    import soxr

    want = int(round(seconds * SR))
    parts, have = [], 0
    while have < want:
        for f in files:
            x, rate = sf.read(str(f), dtype="float32", always_2d=True)
            x = x.mean(axis=1)
            if rate != SR:
                x = soxr.resample(x, rate, SR)
            parts.append(x)
            have += x.shape[0]
            if have >= want:
                break
    return np.concatenate(parts)[:want]


def pcm16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 32768.0), -32768, 32767).astype("<i2")


def stream_wav_header(rate: int = SR, channels: int = 1) -> bytes:
    """WAV header with unknown sizes (0xFFFFFFFF), as written to pipes."""
    return (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * 2 * channels,
                          2 * channels, 16)
            + b"data" + struct.pack("<I", 0xFFFFFFFF))


# --------------------------------------------------------------------------------------
# Processes: wall time and peak RSS of one child


@dataclass
class Proc:
    """What one finished child process took."""

    wall_s: float
    rss_mb: float
    rc: int
    err: str = ""


TIME = shutil.which("time", path="/usr/bin:/bin") or ""


class PeakRSS:
    """Peak RSS of one child, from ``/usr/bin/time -f %M`` around it.

    Not ``wait4`` on the child itself: a child forked from this (torch-sized) process and
    then exec'd keeps the parent's high-water mark in its ``ru_maxrss``. ``time`` is small,
    so what it reports is the command's own peak.
    """

    def __init__(self) -> None:
        fd, self.path = tempfile.mkstemp(prefix="nwc-speed-rss-")
        os.close(fd)

    def wrap(self, cmd: list[str]) -> list[str]:
        return [TIME, "-f", "%M", "-o", self.path, *cmd] if TIME else cmd

    def mb(self) -> float:
        try:
            text = Path(self.path).read_text().split()
            return float(text[-1]) / 1024.0 if text else float("nan")
        except (OSError, ValueError):
            return float("nan")
        finally:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def run_proc(cmd: list[str], stdin: Path | None = None, stdout: Path | None = None,
             env: dict | None = None) -> Proc:
    """Run ``cmd`` to completion: wall time, exit code and peak RSS."""
    rss = PeakRSS()
    with contextlib.ExitStack() as st:
        fin = st.enter_context(open(stdin, "rb")) if stdin else subprocess.DEVNULL
        fout = st.enter_context(open(stdout, "wb")) if stdout else subprocess.DEVNULL
        ferr = st.enter_context(tempfile.TemporaryFile())
        t0 = time.perf_counter()
        rc = subprocess.call(rss.wrap(cmd), stdin=fin, stdout=fout, stderr=ferr, env=env)
        wall = time.perf_counter() - t0
        ferr.seek(0)
        err = ferr.read().decode(errors="replace").strip()
    return Proc(wall, rss.mb(), rc, err)


def checked(p: Proc, what: str) -> Proc:
    if p.rc != 0:
        raise RuntimeError(f"{what} exited {p.rc}: {p.err.splitlines()[-1:] or ''}")
    return p


@dataclass
class Reads:
    """Arrival times of a child's stdout: (seconds since start, total bytes so far)."""

    t0: float
    marks: list[tuple[float, int]] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    keep: bool = True

    def first_past(self, nbytes: int) -> float | None:
        """Seconds until the stream held more than ``nbytes`` bytes."""
        for t, n in self.marks:
            if n > nbytes:
                return t
        return None


def _drain(fd: int, reads: Reads) -> None:
    total = 0
    while True:
        b = os.read(fd, 1 << 16)
        if not b:
            return
        total += len(b)
        reads.marks.append((time.perf_counter() - reads.t0, total))
        if reads.keep:
            reads.data += b


def _feed(f, data: bytes | Iterator[bytes]) -> None:
    try:
        if isinstance(data, bytes):
            f.write(data)
        else:
            for chunk in data:
                f.write(chunk)
        f.close()
    except BrokenPipeError:
        pass


def pipe_timed(cmd: list[str], data: bytes, env: dict | None = None) -> tuple[Proc, Reads]:
    """Feed ``data`` to ``cmd``'s stdin as fast as it reads; time every stdout arrival."""
    rss = PeakRSS()
    with tempfile.TemporaryFile() as ferr:
        t0 = time.perf_counter()
        p = subprocess.Popen(rss.wrap(cmd), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=ferr, env=env)
        reads = Reads(t0)
        feeder = threading.Thread(target=_feed, args=(p.stdin, data), daemon=True)
        feeder.start()
        _drain(p.stdout.fileno(), reads)
        rc = p.wait()
        wall = time.perf_counter() - t0
        feeder.join()
        ferr.seek(0)
        err = ferr.read().decode(errors="replace").strip()
    return Proc(wall, rss.mb(), rc, err), reads


# --------------------------------------------------------------------------------------
# In-process (warm) timing


def keep_heap() -> None:
    """glibc keeps freed memory (what ``nwc.codec.infer.keep_freed_memory`` does for the CLI).

    Applied to this process whatever nwc version is measured, so the warm numbers of two
    versions share one allocator setting (glibc's default would otherwise depend on what this
    process allocated before: e.g. the 4 MB matmul operands raise its mmap threshold).
    """
    with contextlib.suppress(OSError, AttributeError):
        mallopt = ctypes.CDLL("libc.so.6").mallopt
        mallopt(-3, 32 << 20)   # M_MMAP_THRESHOLD
        mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD


def best_of(reps: int, fn) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def warm_rtf(tier_name: str, x: np.ndarray, threads: int, reps: int) -> dict:
    """Encode/decode real-time factors through ``nwc.codec.api`` in this (warm) process."""
    import torch
    from nwc.codec import api
    from nwc.codec import tier as tiers

    torch.set_num_threads(threads)
    t = tiers.load(tier_name)

    def encode(sig: np.ndarray) -> list:
        enc = api.StreamEncoder(t, SR, 1)
        packets = []
        for i in range(0, sig.shape[0], BLOCK):  # the CLI's read blocks
            packets += enc.push(sig[i:i + BLOCK, None])
        return packets + enc.finish()

    def decode(packets: list, n: int) -> np.ndarray:
        dec = api.StreamDecoder(t, api.header_for(t, SR, 1, n))
        parts = [dec.push(p) for p in packets]
        parts.append(dec.finish())
        return np.concatenate(parts)

    warm = x[: 5 * SR]
    decode(encode(warm), warm.shape[0])
    enc_s, packets = best_of(reps, lambda: encode(x))
    dec_s, y = best_of(reps, lambda: decode(packets, x.shape[0]))
    assert y.shape[0] == x.shape[0]
    secs = x.shape[0] / SR
    return {"enc": secs / enc_s, "dec": secs / dec_s}


def fast_path_check(tier_name: str, x: np.ndarray) -> str | None:
    """Inference kernels (codec/infer.py) against the modules' own forward, on ``x``."""
    import torch
    from nwc.codec import tier as tiers

    try:
        from nwc.codec import infer  # noqa: F401 - absent in versions without it
    except ImportError:
        return None
    t = tiers.load(tier_name)
    stages = list(getattr(t.model, "stages", [t.model]))
    f = t.framing
    n = (x.shape[0] - f.overlap) // f.hop
    idx = np.arange(n)[:, None] * f.hop + np.arange(f.frame)[None, :]
    frames = torch.from_numpy((x[idx] * 4.0).astype(np.float32))  # ~ gain-normalised level
    same, worst, count = True, 0.0, 0
    for m in stages:
        for i in range(0, n, f.packet_frames):
            fr = frames[i:i + f.packet_frames]
            with torch.no_grad():
                ref = m.encoder(fr[:, None, :])
                lat = torch.round(ref.clamp(-m.quantizer.n_symbols, m.quantizer.n_symbols))
                ref_y = m.decoder(lat)[:, 0, :]
            with torch.inference_mode():
                fast = m.encode(fr)
                fast_y = m.decode(lat)
            same = same and torch.equal(fast, ref)
            worst = max(worst, float((fast_y - ref_y).abs().max()))
            count += int(ref.numel())
    return (f"{tier_name}: inference kernels vs the modules' forward on {n} frames "
            f"({count} latents): latents bit-identical: {'yes' if same else 'NO'}; "
            f"decoded frames max |diff| {worst:.1e}.")


# --------------------------------------------------------------------------------------
# FLOPs and the machine


def _macs(layers, x) -> int:
    """Multiply-accumulates of every Conv1d/ConvTranspose1d/Linear in one forward."""
    import torch
    from torch import nn

    total = 0

    def hook(mod, inp, out) -> None:
        nonlocal total
        if isinstance(mod, nn.Conv1d):
            total += out.numel() * (mod.in_channels // mod.groups) * mod.kernel_size[0]
        elif isinstance(mod, nn.ConvTranspose1d):
            total += inp[0].numel() * (mod.out_channels // mod.groups) * mod.kernel_size[0]
        elif isinstance(mod, nn.Linear):
            total += out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in layers.modules()
               if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d, nn.Linear))]
    try:
        with torch.no_grad():
            layers(x)
    finally:
        for h in handles:
            h.remove()
    return total


def flops_per_second(tier_name: str) -> tuple[float, float]:
    """(encoder, decoder) FLOPs per audio second: 2 x MACs of the convolutions and matmuls.

    A k-stage cascade encodes with every stage and decodes stages 0..k-2 (closed loop).
    """
    import torch
    from nwc.codec import tier as tiers

    t = tiers.load(tier_name)
    stages = list(getattr(t.model, "stages", [t.model]))
    f = t.framing
    enc = dec = 0
    for k, m in enumerate(stages):
        frame = torch.zeros(1, 1, f.frame)
        e = _macs(m.encoder, frame)
        d = _macs(m.decoder, torch.zeros(1, m.cfg.code_channels, m.code_steps))
        enc += e + (d if k < len(stages) - 1 else 0)
        dec += d
    per_s = t.sample_rate / f.hop  # frames per audio second
    return 2 * enc * per_s, 2 * dec * per_s


def matmul_gflops(threads: int = 1, n: int = 1024) -> float:
    """This machine's float32 matmul rate with ``threads`` torch threads (best of 10)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    best, _ = best_of(10, lambda: torch.matmul(a, b))
    torch.set_num_threads(old)
    return 2 * n ** 3 / best / 1e9


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import torch

    return (f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__} "
            f"({torch.backends.cpu.get_cpu_capability()}), Python {platform.python_version()}")


# --------------------------------------------------------------------------------------
# CLI measurements


def nwc_cli(nwc: list[str], tier: str, wav: Path, work: Path, threads: int, reps: int,
            env: dict) -> dict:
    """End-to-end CLI encode and decode of ``wav``: best wall times and peak RSS."""
    out, dec = work / f"{tier}.nwc", work / f"{tier}.out.wav"
    common = ["--threads", str(threads), "-f", "-q"]
    enc = min((checked(run_proc([*nwc, "encode", str(wav), str(out), "--tier", tier, *common],
                                env=env), "nwc encode") for _ in range(reps)),
              key=lambda p: p.wall_s)
    dec_p = min((checked(run_proc([*nwc, "decode", str(out), str(dec), *common], env=env),
                         "nwc decode") for _ in range(reps)), key=lambda p: p.wall_s)
    return {"enc": enc, "dec": dec_p, "bytes": out.stat().st_size, "stream": out}


def time_steps(steps: list[quality.Step], reps: int, what: str) -> Proc:
    """Run ``steps`` one after the other as processes, ``reps`` times: the best total wall
    time, and the peak RSS of the step that needed most (each under ``/usr/bin/time``)."""
    best: Proc | None = None
    for _ in range(max(1, reps)):
        ps = [checked(run_proc(s.argv), f"{what}: {Path(s.argv[0]).name}") for s in steps]
        rss = [q.rss_mb for q in ps if q.rss_mb == q.rss_mb]  # NaN without /usr/bin/time
        p = Proc(sum(q.wall_s for q in ps), max(rss) if rss else float("nan"), 0)
        best = p if best is None or p.wall_s < best.wall_s else best
    assert best is not None
    return best


def warm_steps(steps: list[quality.Step], reps: int) -> float | None:
    """Best wall seconds of ``steps`` called in this process, where every step is a Python call
    (AMR-WB's ctypes codec, libraries already loaded); None for command-line tools."""
    fns = [s.fn for s in steps]
    if not fns or any(f is None for f in fns):
        return None
    t, _ = best_of(max(1, reps), lambda: [f() for f in fns if f is not None])
    return t


def anchor_run(system: quality.System, wav: Path, pcm: np.ndarray, work: Path,
               reps: int) -> dict:
    """Code ``wav`` with one ``bench/quality.py`` system, timing encode and decode apart.

    Returns ``enc``/``dec`` (:class:`Proc`: process wall seconds and peak RSS MB),
    ``warm_enc``/``warm_dec`` (in-process seconds, or None), ``bytes`` and ``stream`` (the
    coded file). ``pcm`` is ``wav``'s int16 samples (what in-process codecs are given).
    """
    work.mkdir(parents=True, exist_ok=True)
    c = system.plan(wav, pcm, work)
    out: dict = {"system": system, "enc": time_steps(c.encode, reps, system.label)}
    out["dec"] = time_steps(c.decode, reps, system.label)
    out["warm_enc"] = warm_steps(c.encode, reps)
    out["warm_dec"] = warm_steps(c.decode, reps)
    # The decode really gave the whole signal back (not an empty or truncated file); codec
    # delays and frame padding leave it a little longer.
    n, got = pcm.shape[0], c.read().shape[0]
    if abs(got - n) > max(SR // 2, n // 20):
        raise RuntimeError(f"{system.label}: decoded {got} samples for {n}")
    out.update(bytes=c.coded.stat().st_size, stream=c.coded)
    return out


def parse_anchors(spec: str, no_opus: bool = False) -> list[str]:
    """``all`` | ``none`` | comma-separated names from ``quality.ALL_ANCHORS``."""
    spec = spec.strip().lower()
    if spec in ("", "all"):
        names = list(quality.ALL_ANCHORS)
    elif spec == "none":
        names = []
    else:
        names = [a.strip() for a in spec.split(",") if a.strip()]
    unknown = [a for a in names if a not in quality.ALL_ANCHORS]
    if unknown:
        raise SystemExit(f"unknown anchor(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(quality.ALL_ANCHORS)}, all or none")
    return [a for a in dict.fromkeys(names) if not (no_opus and a == "opus")]


def pick_rungs(systems: list[quality.System], targets: Iterable[float]) -> list[quality.System]:
    """The rungs of a ladder whose nominal kbps is nearest each target, each once, in ladder
    order (e.g. Speex-WB q4 12.8 and q6 20.6 for 16 and 24; Codec2 3200 for both)."""
    chosen = {id(min(systems, key=lambda s: abs(s.nominal_kbps - t))) for t in targets}
    return [s for s in systems if id(s) in chosen]


def first_bytes(nwc: list[str], tier: str, wav: Path, stream: Path | None, env: dict,
                packet_frames: int | None = None) -> dict:
    """Seconds from starting ``nwc encode - -`` / ``nwc decode - -`` (input piped as fast as
    it is read) to their first output byte and first coded/decoded audio byte (no decode
    without ``stream``)."""
    data = wav.read_bytes()
    p, r = pipe_timed([*nwc, "encode", "-", "-", "--tier", tier, "-q",
                       *packet_args(packet_frames)], data, env)
    checked(p, "nwc encode - -")
    head = bytes(r.data).find(SYNC)
    out = {"enc_first": r.first_past(0), "enc_packet": r.first_past(max(head, 0))}
    if stream is None:
        return out
    p, r = pipe_timed([*nwc, "decode", "-", "-", "-q"], stream.read_bytes(), env)
    checked(p, "nwc decode - -")
    out.update(dec_first=r.first_past(0), dec_audio=r.first_past(WAV_HEADER))
    return out


def opus_first_bytes(wav: Path, stream: Path) -> dict:
    p, r = pipe_timed(["opusenc", "--quiet", "-", "-"], wav.read_bytes())
    checked(p, "opusenc - -")
    out = {"enc_first": r.first_past(0)}
    p, r = pipe_timed(["opusdec", "--quiet", "--rate", str(SR), "-", "-"], stream.read_bytes())
    checked(p, "opusdec - -")
    out["dec_first"] = r.first_past(0)
    return out


def packet_args(packet_frames: int | None) -> list[str]:
    return [] if packet_frames is None else ["--packet-frames", str(packet_frames)]


def wait_idle(pid: int, quiet_s: float = 0.3, timeout_s: float = 120.0) -> None:
    """Wait until process ``pid`` sleeps without using CPU for ``quiet_s`` (started up and
    waiting for input); without /proc, sleep 3 s."""
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():
        time.sleep(3.0)
        return

    def sample() -> tuple[str, int]:
        f = stat.read_text().rsplit(")", 1)[1].split()  # state, ..., utime, stime
        return f[0], int(f[11]) + int(f[12])

    end = time.perf_counter() + timeout_s
    last, since = sample()[1], time.perf_counter()
    while time.perf_counter() < end:
        time.sleep(0.05)
        try:
            state, cpu = sample()
        except (OSError, IndexError, ValueError):
            return  # it exited
        if cpu != last or state != "S":
            last, since = cpu, time.perf_counter()
        elif time.perf_counter() - since >= quiet_s:
            return


def stream_packets(data: bytes) -> list[tuple[int, int, int]]:
    """(end offset, kind, granule) of each packet of a complete, undamaged .nwc stream."""
    reader = ContainerReader(io.BytesIO(data))
    return [(reader.offset, p.kind, p.granule) for p in reader if isinstance(p, Packet)]


def warm_encoder(nwc: list[str], tier: str, x: np.ndarray, env: dict, packet_frames: int,
                 frame_hop: tuple[int, int], chunk_ms: float = 10.0) -> dict:
    """``nwc encode - -`` as a live encoder: started, given a streaming WAV header, left to
    start up (its stream header comes out, then it idles waiting for audio), then fed ``x``
    at real-time pace in ``chunk_ms`` writes.

    Returns ms from process start to the first byte (the header), and per packet, ms from
    when its first sample / the last sample it needs (``frame - hop`` past its end) was
    written to when the packet was out: the first packet, and the worst of the others.
    """
    overlap = frame_hop[0] - frame_hop[1]
    t_start = time.perf_counter()
    enc = subprocess.Popen([*nwc, "encode", "-", "-", "--tier", tier, "-q",
                            *packet_args(packet_frames)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    reads = Reads(t_start)
    reader = threading.Thread(target=_drain, args=(enc.stdout.fileno(), reads), daemon=True)
    step = int(SR * chunk_ms / 1000)
    fed: list[float] = []  # when chunk i (samples i*step ...) was written
    try:
        enc.stdin.write(stream_wav_header())
        enc.stdin.flush()
        reader.start()
        wait_idle(enc.pid)
        pcm = pcm16(x).tobytes()
        t0 = time.perf_counter()
        for i, k in enumerate(range(0, len(pcm), 2 * step)):
            delay = t0 + i * chunk_ms / 1000 - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            fed.append(time.perf_counter() - t_start)
            enc.stdin.write(pcm[k:k + 2 * step])
            enc.stdin.flush()
        enc.stdin.close()
        reader.join(TIMEOUT_S)
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            enc.wait(60)
    after_first, after_last = [], []
    for end, kind, granule in stream_packets(bytes(reads.data)):
        if kind != AUDIO or granule + overlap > len(x):  # END, or the last packet (waits for EOF)
            continue
        out = reads.first_past(end - 1)
        start = granule - packet_frames * frame_hop[1]  # a full packet's first sample
        after_first.append(out - fed[start // step])
        after_last.append(out - fed[(granule + overlap - 1) // step])
    ms = [1000 * v for v in after_last]
    return {"first_byte": reads.first_past(0),
            "first": 1000 * after_first[0] if after_first else None,
            "first_last": ms[0] if ms else None,
            "worst_last": max(ms[1:]) if len(ms) > 1 else None}


def live_latency(nwc: list[str], tier: str, x: np.ndarray, env: dict,
                 chunk_ms: float = 10.0, packet_frames: int | None = None) -> dict:
    """Feed ``x`` at real-time pace through ``encode - - | decode - -``; per output sample,
    latency = when it came out - when it went in. Returns the first packet's first sample
    and the worst sample after the first packet (steady state)."""
    enc = subprocess.Popen([*nwc, "encode", "-", "-", "--tier", tier, "-q",
                            *packet_args(packet_frames)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, env=env)
    dec = subprocess.Popen([*nwc, "decode", "-", "-", "-q"], stdin=enc.stdout,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    enc.stdout.close()
    try:
        enc.stdin.write(stream_wav_header())
        enc.stdin.flush()
        fd = dec.stdout.fileno()
        head = b""
        while len(head) < WAV_HEADER:  # the decoder is up once the WAV header comes out
            b = os.read(fd, WAV_HEADER - len(head))
            if not b:
                raise RuntimeError("live pipeline ended before its WAV header")
            head += b
        for p in (enc, dec):  # the encoder writes its header before loading its model
            wait_idle(p.pid)
        pcm = pcm16(x).tobytes()
        step = int(SR * chunk_ms / 1000) * 2
        t0 = time.perf_counter()
        reads = Reads(t0, keep=False)
        reader = threading.Thread(target=_drain, args=(fd, reads), daemon=True)
        reader.start()
        for i, k in enumerate(range(0, len(pcm), step)):
            delay = t0 + i * chunk_ms / 1000 - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            enc.stdin.write(pcm[k:k + step])
            enc.stdin.flush()
        enc.stdin.close()
        reader.join(TIMEOUT_S)
    finally:
        for p in (enc, dec):
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(60)
    lat, prev = [], 0
    for t, n in reads.marks:
        s0 = prev // 2  # first new sample in this read
        lat.append(t - s0 / SR)
        prev = n
    if not lat:
        raise RuntimeError("live pipeline produced no audio")
    return {"first": lat[0], "steady": max(lat[1:]) if len(lat) > 1 else float("nan")}


# --------------------------------------------------------------------------------------
# Flat memory: hours through pipes


def long_talk(base: np.ndarray, seconds: float, header: bytes | None = None
              ) -> Iterator[bytes]:
    """A WAV of ``seconds`` of speech: ``base`` repeated, 1 s chunks (streaming header unless
    one is given)."""
    yield stream_wav_header() if header is None else header
    pcm = pcm16(base).tobytes()
    left = int(round(seconds * SR)) * 2
    pos = 0
    while left > 0:
        n = min(left, SR * 2, len(pcm) - pos)
        yield pcm[pos:pos + n]
        left -= n
        pos = (pos + n) % len(pcm)


def sized_wav_header(frames: int, rate: int = SR) -> bytes:
    """A plain 16-bit mono WAV header with real sizes (a file soundfile reads)."""
    data = frames * 2
    return (b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
            + b"data" + struct.pack("<I", data))


class StreamHash:
    """SHA-256 of an .nwc stream's packets (everything after its header).

    A piped encode writes ``total_samples`` unknown into its header, a file encode the real
    length; the packets (codes, gains, granules, END) must be the same bytes.
    """

    def __init__(self) -> None:
        import hashlib

        self.h = hashlib.sha256()
        self.head = bytearray()
        self.skip: int | None = None  # header bytes still to skip, once known
        self.packet_bytes = 0

    def update(self, b: bytes) -> None:
        if self.skip is None:
            self.head += b
            if len(self.head) < PREAMBLE_BYTES:
                return
            self.skip = header_length(bytes(self.head))
            b, self.head = bytes(self.head), bytearray()
        cut = min(self.skip, len(b))
        self.skip -= cut
        self.h.update(b[cut:])
        self.packet_bytes += len(b) - cut

    def hexdigest(self) -> str:
        return self.h.hexdigest()


def _relay(src: int, dst, hasher: StreamHash) -> None:
    """Copy the encoder's stdout into the decoder's stdin, hashing it on the way."""
    try:
        while True:
            b = os.read(src, 1 << 16)
            if not b:
                break
            hasher.update(b)
            dst.write(b)
            dst.flush()
    except BrokenPipeError:
        pass
    finally:
        with contextlib.suppress(BrokenPipeError):
            dst.close()


def memory_run(nwc: list[str], tier: str, base: np.ndarray, seconds: float, env: dict,
               work: Path | None = None) -> dict:
    """``generator | nwc encode - - | nwc decode - - | counter``: peak RSS of each nwc.

    The encoded stream is relayed (and hashed) between the two. With ``work``, the same
    audio is also written to a WAV file there and coded file to file (``nwc encode IN OUT``),
    and ``same_codes`` says whether both streams carry identical packets.
    """
    out: dict = {}
    if work is not None:
        frames = int(round(seconds * SR))
        wav, coded = work / "long.wav", work / "long.nwc"
        with open(wav, "wb") as f:
            for b in long_talk(base, seconds, sized_wav_header(frames)):
                f.write(b)
        p = checked(run_proc([*nwc, "encode", str(wav), str(coded), "--tier", tier, "-q",
                              "-f"], env=env), "nwc encode (whole file)")
        wav.unlink()
        whole = StreamHash()
        with open(coded, "rb") as f:
            while b := f.read(1 << 20):
                whole.update(b)
        coded.unlink()
        out["file_enc"] = p.rss_mb
        out["file_hash"] = whole.hexdigest()
    rss = {"enc": PeakRSS(), "dec": PeakRSS()}
    t0 = time.perf_counter()
    enc = subprocess.Popen(rss["enc"].wrap([*nwc, "encode", "-", "-", "--tier", tier, "-q"]),
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    dec = subprocess.Popen(rss["dec"].wrap([*nwc, "decode", "-", "-", "-q"]),
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    piped = StreamHash()
    relay = threading.Thread(target=_relay, args=(enc.stdout.fileno(), dec.stdin, piped),
                             daemon=True)
    relay.start()
    feeder = threading.Thread(target=_feed, args=(enc.stdin, long_talk(base, seconds)),
                              daemon=True)
    feeder.start()
    reads = Reads(t0, keep=False)
    _drain(dec.stdout.fileno(), reads)
    feeder.join()
    relay.join()
    for name, p in (("enc", enc), ("dec", dec)):
        if p.wait():
            raise RuntimeError(f"nwc {name} exited {p.returncode} on the long stream")
        out[name] = rss[name].mb()
    out["wall"] = time.perf_counter() - t0
    out["seconds_out"] = ((reads.marks[-1][1] if reads.marks else 0) - WAV_HEADER) / 2 / SR
    out["stream_bytes"] = piped.packet_bytes
    if work is not None:
        out["same_codes"] = piped.hexdigest() == out["file_hash"]
    return out


# --------------------------------------------------------------------------------------
# Tables


def fx(v: float | None, f: str = ".0f", suffix: str = "") -> str:
    if v is None or v != v:
        return "–"
    return f"{v:{f}}{suffix}"


def markdown(header: list[str], rows: list[list[str]]) -> str:
    align = ["---" if i < 1 else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def length_label(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def nwc_tiers(nwc: list[str], env: dict) -> list[dict]:
    """The installed tiers; no list, no benchmark."""
    try:
        return installed_tiers(nwc, env, TIMEOUT_S)
    except ToolError as exc:
        raise SystemExit(str(exc)) from None


def nominal_kbps(t: dict) -> float:
    k = t.get("target_kbps") or t.get("kbps") or 16.0
    return float(round(k))


def speed_tables(args: argparse.Namespace, nwc: list[str], env: dict, tiers: list[dict],
                 files: list[Path], work: Path, notes: list[str]) -> str:
    all_threads = os.cpu_count() or 1
    thread_set = sorted({all_threads if t == "all" else int(t) for t in args.threads.split(",")})
    if args.quick:
        thread_set = [1]
    usable = []
    for a in args.anchors:
        why = quality.anchor_unavailable(a)
        if why:
            notes.append(why)
        else:
            usable.append(a)
    opus = "opus" in usable
    # Opus at every tier's nominal rate (the nwc ÷ Opus table) and at the anchor targets.
    opus_kbps = sorted({nominal_kbps(t) for t in tiers} | {float(round(k))
                                                           for k in args.anchor_kbps})
    rungs = [s for a in usable if a != "opus"
             for s in pick_rungs(quality.anchor_systems(a), args.anchor_kbps)]
    mm = matmul_gflops(1)
    flops = {t["name"]: flops_per_second(t["name"]) for t in tiers}
    rows, ratio_rows, extra_rows, all_rows = [], [], [], []
    ttfb_rows = ""
    checks: list[str] = []
    for seconds in args.lengths:
        log(f"[{length_label(seconds)}] building the test signal")
        x = speech(files, seconds)
        wav = work / f"speech-{seconds:g}s.wav"
        sf.write(str(wav), pcm16(x), SR, subtype="PCM_16")
        label = length_label(seconds)
        pcm = pcm16(x)
        opus_res: dict[float, dict] = {}
        for kb in opus_kbps if opus else []:
            log(f"[{label}] opus {kb:g} kbps")
            opus_res[kb] = anchor_run(quality.opus_system(int(kb)), wav, pcm,
                                      work / f"opus{kb:g}", args.reps)
        anchor_res = []
        for i, s in enumerate(rungs):
            log(f"[{label}] {s.label}")
            try:
                anchor_res.append(anchor_run(s, wav, pcm, work / f"anchor{i:02d}", args.reps))
            except (RuntimeError, OSError) as exc:  # one broken tool costs its row, not the run
                log(f"    FAILED: {exc}")
                notes.append(f"{s.label} on {label}: failed ({exc}); no row.")
        nwc_res = []
        for t in tiers:
            name = t["name"]
            kb = nominal_kbps(t)
            for th in thread_set:
                log(f"[{label}] {name}, {th} thread(s): in-process")
                warm = warm_rtf(name, x, th, args.reps)
                log(f"[{label}] {name}, {th} thread(s): CLI")
                cli = nwc_cli(nwc, name, wav, work, th, args.reps, env)
                row = [f"nwc {name}", label, str(th), fx(warm["enc"]), fx(warm["dec"]),
                       fx(seconds / cli["enc"].wall_s), fx(seconds / cli["dec"].wall_s),
                       fx(cli["enc"].rss_mb), fx(cli["dec"].rss_mb),
                       fx(8 * cli["bytes"] / seconds / 1000, ".2f")]
                rows.append(row)
                if opus:
                    o = opus_res[kb]
                    oe, od = seconds / o["enc"].wall_s, seconds / o["dec"].wall_s
                    ratio_rows.append([f"nwc {name} / Opus {kb:g}k", label, str(th),
                                       fx(warm["enc"] / oe, ".2f"), fx(warm["dec"] / od, ".2f"),
                                       fx(seconds / cli["enc"].wall_s / oe, ".2f"),
                                       fx(seconds / cli["dec"].wall_s / od, ".2f")])
                if th == 1:
                    nwc_res.append((name, kb, warm, cli))
                if th == 1 and seconds == args.lengths[0]:
                    fe, fd = flops[name]
                    extra_rows.append((name, warm, cli, fe, fd))
            if seconds == args.lengths[0] and not args.quick:
                msg = fast_path_check(name, x)
                if msg:
                    checks.append(msg)
        if opus:
            for kb, o in sorted(opus_res.items()):
                rows.append([f"Opus {kb:g}k", label, "1", "–", "–",
                             fx(seconds / o["enc"].wall_s), fx(seconds / o["dec"].wall_s),
                             fx(o["enc"].rss_mb), fx(o["dec"].rss_mb),
                             fx(8 * o["bytes"] / seconds / 1000, ".2f")])
        all_rows += all_systems_rows(label, seconds, nwc_res, opus_res, anchor_res)
        if seconds == args.lengths[0] and not args.no_latency:
            ttfb_rows = first_byte_rows(args, nwc, env, tiers, x, wav, opus, opus_res, work)
    out = [markdown(["system", "audio", "threads", "encode ×RT warm", "decode ×RT warm",
                     "encode ×RT CLI", "decode ×RT CLI", "encode peak RSS MB",
                     "decode peak RSS MB", "real kbps"], rows)]
    if all_rows:
        out.append(markdown(["system (1 thread)", "kbps", "audio", "encode ×RT warm",
                             "decode ×RT warm", "encode ×RT process", "decode ×RT process",
                             "encode peak RSS MB", "decode peak RSS MB", "real kbps",
                             "encode ÷ Opus", "decode ÷ Opus"], all_rows))
    if ratio_rows:
        out.append(markdown(["nwc ÷ Opus (same files, same run)", "audio", "nwc threads",
                             "encode warm", "decode warm", "encode CLI", "decode CLI"],
                            ratio_rows))
    if not args.no_latency:
        out.append(ttfb_rows)
    comp = []
    for name, warm, _cli, fe, fd in extra_rows:
        comp.append([f"nwc {name}", fx(fe / 1e9, ".3f"), fx(fd / 1e9, ".3f"),
                     fx(fe * warm["enc"] / 1e9, ".1f"), fx(fd * warm["dec"] / 1e9, ".1f"),
                     fx(100 * fe * warm["enc"] / 1e9 / mm, ".0f", " %"),
                     fx(100 * fd * warm["dec"] / 1e9 / mm, ".0f", " %"),
                     fx(mm * 1e9 / fe), fx(mm * 1e9 / fd)])
    out.append(markdown(["network", "encode GFLOP per audio s", "decode GFLOP per audio s",
                         "encode GFLOP/s achieved (1 thread)", "decode GFLOP/s achieved",
                         "encode % of matmul rate", "decode % of matmul rate",
                         "encode ×RT at matmul rate", "decode ×RT at matmul rate"], comp))
    notes.append(f"Machine: {machine()}; 1-thread float32 matmul (1024², best of 10): "
                 f"{mm:.1f} GFLOP/s.")
    notes.append(f"Audio: 16 kHz mono speech, corpus files from `{args.corpus}` in sorted "
                 "order, concatenated (16-bit WAV in a temporary folder).")
    notes.append("×RT = audio seconds per wall second. warm: `nwc.codec.api` StreamEncoder/"
                 f"StreamDecoder in one process after a 5 s warm-up, {BLOCK}-sample pushes, "
                 f"best of {args.reps}; CLI: `nwc encode IN OUT` / `nwc decode IN OUT` as "
                 "subprocesses, process start, imports and tier loading included, best of "
                 f"{args.reps}. Opus: opusenc (VBR, complexity 10, single-threaded) and "
                 "`opusdec --rate 16000`, same WAV. Peak RSS: the process's max resident set "
                 "(`/usr/bin/time -f %M` around it).")
    if all_rows:
        notes.append(anchors_note(args, rungs, opus))
    notes.append("All-threads runs: OMP_WAIT_POLICY=PASSIVE (the CLI sets it for --threads > "
                 "1 unless the environment says otherwise). The warm runs share this process's "
                 "glibc malloc settings (32 MiB mmap and 256 MiB trim thresholds, as the CLI "
                 "sets them), whatever nwc version is measured.")
    notes.append("FLOPs: 2 × multiply-accumulates of every convolution and matmul, counted "
                 "from the layer shapes of one frame, × frames per second (rate / hop); "
                 "activations, gates and residual adds are not counted. 'at matmul rate' = "
                 "the ×RT a network would reach at the machine's 1-thread matmul rate.")
    notes.extend(checks)
    return "\n\n".join(out)


def all_systems_rows(label: str, seconds: float, nwc_res: list[tuple], opus_res: dict,
                     anchor_res: list[dict]) -> list[list[str]]:
    """One test length's rows of the all-systems table: nwc at 1 thread, Opus, the anchors.

    ÷ Opus: the system's ×RT over that of the Opus run nearest in nominal kbps, both as
    processes (and, for a system that also runs warm, its warm ×RT over Opus's in brackets).
    """

    def opus_rt(kbps: float) -> tuple[float, float] | None:
        if not opus_res:
            return None
        o = opus_res[min(opus_res, key=lambda k: (abs(k - kbps), k))]
        return seconds / o["enc"].wall_s, seconds / o["dec"].wall_s

    def ratio(proc: float, warm: float | None, ref: float | None) -> str:
        if ref is None:
            return "–"
        text = fx(proc / ref, ".2f")
        return text if warm is None else f"{text} (warm {warm / ref:.2f})"

    def row(name: str, kbps: float, warm_enc: float | None, warm_dec: float | None,
            enc: Proc, dec: Proc, nbytes: int) -> list[str]:
        pe, pd = seconds / enc.wall_s, seconds / dec.wall_s
        ref = opus_rt(kbps)
        return [name, f"{kbps:g}", label, fx(warm_enc), fx(warm_dec), fx(pe), fx(pd),
                fx(enc.rss_mb), fx(dec.rss_mb), fx(8 * nbytes / seconds / 1000, ".2f"),
                ratio(pe, warm_enc, ref and ref[0]), ratio(pd, warm_dec, ref and ref[1])]

    def warm_rt(t: float | None) -> float | None:
        return None if t is None else seconds / t

    rows = [row(f"nwc {name}", kb, warm["enc"], warm["dec"], cli["enc"], cli["dec"],
                cli["bytes"]) for name, kb, warm, cli in nwc_res]
    for r in [*(opus_res[k] for k in sorted(opus_res)), *anchor_res]:
        s = r["system"]
        rows.append(row(s.label, s.nominal_kbps, warm_rt(r["warm_enc"]), warm_rt(r["warm_dec"]),
                        r["enc"], r["dec"], r["bytes"]))
    return rows


def anchors_note(args: argparse.Namespace, rungs: list[quality.System], opus: bool) -> str:
    """How the all-systems table was measured."""
    picked = ", ".join(s.label for s in rungs) or "none"
    targets = "/".join(f"{k:g}" for k in args.anchor_kbps)
    return ("All systems, one thread: nwc warm (1 torch thread, as above) and as processes "
            "(`nwc encode`/`nwc decode`); every anchor with `bench/quality.py`'s own command "
            "lines (`--anchors`), the ladder rung nearest each of "
            f"{targets} kbps nominal ({picked}; Opus at "
            + ("each tier's nominal rate and at those" if opus else "–")
            + "). Encode and decode are timed apart, as processes (best of "
            f"{args.reps} of the summed wall time of the step's commands; all the anchor tools "
            "code on one thread) with the peak RSS of the largest command (`/usr/bin/time -f "
            "%M`). Codec2 codes 8 kHz: its encode includes `sox` resampling to 8 kHz, its "
            "decode writes 8 kHz. AMR-WB runs in this process through ctypes (bench/amrwb.py): "
            "warm = those calls, process = `python bench/amrwb.py encode|decode` (interpreter "
            "and NumPy start included, also in its RSS). ÷ Opus: ×RT over that of the Opus run "
            "nearest in nominal kbps on the same file, both as processes; in brackets, the "
            "system's warm ×RT over Opus's process ×RT.")


def first_byte_rows(args, nwc, env, tiers, x, wav, opus, opus_res, work) -> str:
    rows = []
    for t in tiers:
        name = t["name"]
        log(f"[latency] {name}: first bytes")
        stream = work / f"{name}.nwc"
        fb = first_bytes(nwc, name, wav, stream, env)
        live = {"first": None, "steady": None}
        if not args.quick:
            log(f"[latency] {name}: live pipe ({args.live_seconds:g} s at real-time pace)")
            live = live_latency(nwc, name, x[: int(args.live_seconds * SR)], env)
        alg = algorithmic_latency_ms(name)
        rows.append([f"nwc {name}", fx(alg, ".1f"), fx(fb["enc_first"], ".2f"),
                     fx(fb["enc_packet"], ".2f"), fx(fb["dec_first"], ".2f"),
                     fx(fb["dec_audio"], ".2f"),
                     fx(live["first"] and live["first"] * 1000, ".0f"),
                     fx(live["steady"] and live["steady"] * 1000, ".0f")])
    if opus:
        for kb, o in sorted(opus_res.items()):
            fb = opus_first_bytes(wav, o["stream"])
            rows.append([f"Opus {kb:g}k", fx(OPUS_LATENCY_MS, ".1f"), fx(fb["enc_first"], ".2f"),
                         "–", fx(fb["dec_first"], ".2f"), fx(fb["dec_first"], ".2f"), "–", "–"])
    table = markdown(["system", "algorithmic latency ms", "encode first byte s",
                      "encode first packet s", "decode first byte s", "decode first audio s",
                      "live: first sample ms", "live: worst sample ms"], rows)
    if not args.packet_frames:
        return table
    return table + "\n\n" + packet_rows(args, nwc, env, tiers, x, wav)


def packet_rows(args, nwc, env, tiers, x, wav) -> str:
    """Latency per packet size (``--packet-frames``): cold start, a warm live encoder, and
    the live encode | decode pipe."""
    from nwc.codec import catalog

    rows = []
    live_x = x[: int((0.5 if args.quick else args.live_seconds) * SR)]
    for t in tiers:
        info = catalog.info(t["name"])
        for pf in args.packet_frames:
            f = catalog.packet_framing(info, pf)
            log(f"[latency] {info.name}, {pf} frame(s) a packet: cold, warm encoder"
                + ("" if args.quick else ", live pipe"))
            cold = first_bytes(nwc, info.name, wav, None, env, pf)
            warm = warm_encoder(nwc, info.name, live_x, env, pf, (f.frame, f.hop))
            live = {"first": None, "steady": None}
            if not args.quick:
                live = live_latency(nwc, info.name, live_x, env, packet_frames=pf)
            rows.append([f"nwc {info.name}", str(pf),
                         fx(catalog.latency_ms(f, info.sample_rate), ".1f"),
                         fx(cold["enc_first"] and cold["enc_first"] * 1000, ".0f"),
                         fx(cold["enc_packet"], ".2f"),
                         fx(warm["first_byte"] and warm["first_byte"] * 1000, ".0f"),
                         fx(warm["first"], ".0f"), fx(warm["first_last"], ".0f"),
                         fx(warm["worst_last"], ".0f"),
                         fx(live["first"] and live["first"] * 1000, ".0f"),
                         fx(live["steady"] and live["steady"] * 1000, ".0f")])
    return markdown(["system", "packet frames", "algorithmic latency ms",
                     "cold: first byte ms", "cold: first packet s",
                     "live encoder: first byte ms", "live encoder: first packet after its "
                     "first sample ms", "… after its last sample ms",
                     "… worst packet after its last sample ms",
                     "live pipe: first sample ms", "live pipe: worst sample ms"], rows)


def algorithmic_latency_ms(tier_name: str) -> float:
    """A packet is coded once all its frames are in: P·H + (F − H) samples after its start."""
    from nwc.codec import tier as tiers

    t = tiers.load(tier_name)
    f = t.framing
    return 1000 * f.packet_span(f.packet_frames) / t.sample_rate


def framing_note(tiers: list[dict]) -> str:
    from nwc.codec import tier as tiers_mod

    parts = []
    for t in tiers:
        tr = tiers_mod.load(t["name"])
        f = tr.framing
        ms = 1000 / tr.sample_rate
        parts.append(f"{t['name']}: frame {f.frame} ({f.frame * ms:g} ms), hop {f.hop} "
                     f"({f.hop * ms:g} ms), {f.packet_frames} frames a packet "
                     f"({f.packet_hop * ms:g} ms) + {f.overlap} samples look-ahead = "
                     f"{f.packet_span(f.packet_frames) * ms:g} ms")
    return ("Algorithmic latency (framing, compute excluded): the encoder codes a packet once "
            "its last frame is complete, and the decoder outputs it whole; "
            + "; ".join(parts) + f". Opus: {OPUS_LATENCY_MS} ms (20 ms frames + 6.5 ms "
            "look-ahead). First byte/packet/audio: seconds from starting the process with its "
            "input piped as fast as it reads (startup included); an .nwc stream's first bytes "
            "are its header, a decoded WAV's its 44-byte header. Live: the 16-bit WAV fed in "
            "10 ms writes at real-time pace through `nwc encode - - | nwc decode - -` once "
            "both are up (idle, waiting for input); latency of a sample = when it comes out − "
            "when it went in. Per packet size (`--packet-frames`): cold = `nwc encode - - "
            "--packet-frames P` with its input piped as fast as it reads, from process start; "
            "live encoder = the same process given a streaming WAV header, left to start up "
            "(its stream header comes out, then it idles), then fed speech at real-time pace in "
            "10 ms writes: for each packet, when it was out − when its first sample (or the "
            "last sample it needs, `frame − hop` past its end) was written.")


def memory_table(args, nwc, env, tiers, files, notes, work: Path) -> str:
    base = speech(files, min(600.0, max(args.memory_hours) * 3600))
    lengths = sorted({600.0, *(h * 3600 for h in args.memory_hours)})
    rows = []
    for t in tiers:
        for seconds in lengths:
            check = None if args.no_code_check else work
            log(f"[memory] {t['name']}: {length_label(seconds)}"
                + (" file to file, then" if check else "") + " through pipes")
            r = memory_run(nwc, t["name"], base, seconds, env, check)
            same = "–" if "same_codes" not in r else ("yes" if r["same_codes"] else "NO")
            rows.append([f"nwc {t['name']}", length_label(seconds), fx(r["seconds_out"], ".1f"),
                         fx(r["enc"], ".0f"), fx(r["dec"], ".0f"), fx(r.get("file_enc"), ".0f"),
                         same, fx(r["wall"], ".1f"), fx(r["seconds_out"] / r["wall"], ".0f")])
            log(f"[memory] {rows[-1]}")
    notes.append(f"Memory: a generator writes a streaming WAV ({base.shape[0] / SR:.0f} s of "
                 "corpus speech, repeated) into `nwc encode - - | nwc decode - -` (the stream "
                 "relayed and hashed between them); peak RSS per process from "
                 "`/usr/bin/time -f %M`; 'audio out' = decoded seconds counted at the end of "
                 "the pipe; wall and ×RT of the whole chain (both processes run at once). "
                 "'same codes': the same audio written to a WAV file and coded with "
                 "`nwc encode IN OUT` gives byte-identical packets (SHA-256 of everything "
                 "after the header; the headers differ only in the known length).")
    return markdown(["system", "input", "audio out s", "encode peak RSS MB",
                     "decode peak RSS MB", "file encode peak RSS MB", "same codes as file",
                     "wall s", "chain ×RT"], rows)


# --------------------------------------------------------------------------------------
# Start-up: the whole command, one core, NumPy engine against torch, beside Opus and AMR-WB

# The issue-18 targets for the NumPy engine (processes on one core, start-up included).
TARGETS = {"short_s": 0.5, "dec_rt": 100.0, "enc_rt": 50.0, "version_s": 0.15, "rss_mb": 100.0}


def engine_env(env: dict, engine: str) -> dict:
    """``nwc`` on the NumPy engine (the CPU default) or on torch (``NWC_ENGINE=torch``)."""
    e = {k: v for k, v in env.items() if k != "NWC_ENGINE"}
    if engine == "torch":
        e["NWC_ENGINE"] = "torch"
    return e


def one_core() -> int:
    """Pin this process, and so every child it starts, to one CPU; returns that CPU."""
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def startup_tables(args: argparse.Namespace, nwc: list[str], env: dict, tiers: list[dict],
                   files: list[Path], work: Path, notes: list[str]) -> str:
    """Whole commands on a short and a long clip: seconds, x real time, peak RSS."""
    cpu = one_core()
    short, long = args.startup_lengths
    clips = {}
    for s in (short, long):
        x = speech(files, s)
        wav = work / f"speech-{s:g}s.wav"
        sf.write(str(wav), pcm16(x), SR, subtype="PCM_16")
        clips[s] = (wav, pcm16(x))
    version = min((checked(run_proc([*nwc, "--version"], env=env), "nwc --version")
                   for _ in range(args.reps)), key=lambda p: p.wall_s)
    rows, checks = [], []
    for t in tiers:
        name = t["name"]
        for engine in args.engines:
            e = engine_env(env, engine)
            log(f"[start-up] {name} on {engine}")
            for s in (short, long):
                (work / f"{engine}-{s:g}").mkdir(exist_ok=True)
            res = {s: nwc_cli(nwc, name, clips[s][0], work / f"{engine}-{s:g}", 1, args.reps, e)
                   for s in (short, long)}
            r_s, r_l = res[short], res[long]
            rss = max(r_l["enc"].rss_mb, r_l["dec"].rss_mb, r_s["enc"].rss_mb,
                      r_s["dec"].rss_mb)
            enc_rt, dec_rt = long / r_l["enc"].wall_s, long / r_l["dec"].wall_s
            rows.append([f"nwc {name}", engine, fx(r_s["enc"].wall_s, ".2f"),
                         fx(r_s["dec"].wall_s, ".2f"), fx(enc_rt), fx(dec_rt),
                         fx(r_l["enc"].rss_mb), fx(r_l["dec"].rss_mb),
                         fx(8 * r_l["bytes"] / long / 1000, ".2f")])
            if engine == "numpy":
                ok = (r_s["enc"].wall_s <= TARGETS["short_s"]
                      and r_s["dec"].wall_s <= TARGETS["short_s"]
                      and enc_rt >= TARGETS["enc_rt"] and dec_rt >= TARGETS["dec_rt"]
                      and rss <= TARGETS["rss_mb"])
                checks.append(f"{name}: {'meets' if ok else 'MISSES'} the targets")
    for anchor in [a for a in ("opus", "amrwb") if a in args.anchors]:
        why = quality.anchor_unavailable(anchor)
        if why:
            notes.append(why)
            continue
        systems = [quality.opus_system(int(k)) for k in args.anchor_kbps] if anchor == "opus" \
            else pick_rungs(quality.anchor_systems(anchor), args.anchor_kbps)
        for i, system in enumerate(systems):
            log(f"[start-up] {system.label}")
            res = {s: anchor_run(system, clips[s][0], clips[s][1],
                                 work / f"{anchor}{i}-{s:g}", args.reps) for s in (short, long)}
            r_s, r_l = res[short], res[long]
            rows.append([system.label, "–", fx(r_s["enc"].wall_s, ".2f"),
                         fx(r_s["dec"].wall_s, ".2f"), fx(long / r_l["enc"].wall_s),
                         fx(long / r_l["dec"].wall_s), fx(r_l["enc"].rss_mb),
                         fx(r_l["dec"].rss_mb), fx(8 * r_l["bytes"] / long / 1000, ".2f")])
    table = markdown(["system", "engine", f"encode {short:g} s clip (s)",
                      f"decode {short:g} s clip (s)", f"encode {long:g} s ×RT",
                      f"decode {long:g} s ×RT", "encode peak RSS MB", "decode peak RSS MB",
                      "real kbps"], rows)
    notes.append(f"`nwc --version`: {version.wall_s:.3f} s, peak RSS {version.rss_mb:.0f} MB "
                 f"(target ≤ {TARGETS['version_s']} s).")
    notes.append(f"Start-up table: every process pinned to CPU {cpu} (one core), whole "
                 "commands (`nwc encode IN OUT --tier T`, `nwc decode IN OUT`; Opus: opusenc / "
                 "opusdec; AMR-WB: bench/amrwb.py's encoder and decoder processes), interpreter "
                 f"start, imports and tier loading included; best of {args.reps}; speech from "
                 f"`{args.corpus}` as 16 kHz 16-bit WAV. ×RT = audio seconds per wall second. "
                 "engine numpy: the CPU default (`codec/npengine.py`, no torch import); torch: "
                 "the same commands with NWC_ENGINE=torch. Peak RSS: `/usr/bin/time -f %M`, "
                 f"the larger of the {short:g} s and {long:g} s runs for the targets.")
    notes.append(f"Targets (NumPy engine): {short:g} s clip encoded or decoded in ≤ "
                 f"{TARGETS['short_s']} s; {long:g} s at ≥ {TARGETS['dec_rt']:g}× decode and ≥ "
                 f"{TARGETS['enc_rt']:g}× encode; peak RSS ≤ {TARGETS['rss_mb']:g} MB: "
                 + "; ".join(checks) + ".")
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Speed, memory and latency of nwc tiers and Opus.")
    p.add_argument("--tiers", default="", help="comma-separated tier names (default: all)")
    p.add_argument("--corpus", type=Path, default=Path("/work/corpus/speech"),
                   help="folder of speech .wav files (searched recursively)")
    p.add_argument("--lengths", default="60,600",
                   help="test lengths in seconds, comma-separated (default 60,600)")
    p.add_argument("--reps", type=int, default=0,
                   help="repetitions per timing, best kept (default 3; 1 with --quick)")
    p.add_argument("--threads", default="1,all",
                   help="torch thread counts to measure, comma-separated; all = every CPU")
    p.add_argument("--packet-frames", default="1,2,4,8,16",
                   help="packet sizes for the latency-by-packet-size table, comma-separated; "
                        "'' skips it (default 1,2,4,8,16; 1 with --quick)")
    p.add_argument("--live-seconds", type=float, default=3.0,
                   help="audio fed at real-time pace for the live latency (default 3)")
    p.add_argument("--memory-hours", type=lambda s: [float(v) for v in s.split(",")],
                   help="only the memory run: 10 min and these lengths in hours, e.g. 1")
    p.add_argument("--no-code-check", action="store_true",
                   help="memory run: skip coding the same audio file to file to compare codes")
    p.add_argument("--anchors", default="all",
                   help="anchor codecs of bench/quality.py to time: all, none or a,b from "
                        f"{','.join(quality.ALL_ANCHORS)} (default all)")
    p.add_argument("--anchor-kbps", default="16,24",
                   help="nominal rates; each anchor is timed at its ladder rung nearest each "
                        "(default 16,24)")
    p.add_argument("--no-opus", action="store_true", help="skip Opus (and every ÷ Opus)")
    p.add_argument("--no-latency", action="store_true",
                   help="skip the first-byte and live latency table")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 3 s of audio, 1 thread, 1 repetition, no live latency")
    p.add_argument("--nwc", help="command that runs nwc (default: this Python's `-m nwc`)")
    p.add_argument("--out-md", type=Path, help="also write the tables and notes here")
    p.add_argument("--startup", action="store_true",
                   help="only the start-up table: whole commands on one core, NumPy engine "
                        "against torch, with Opus and AMR-WB (--startup-lengths)")
    p.add_argument("--startup-lengths", default="5,60",
                   help="short and long clip for --startup, seconds (default 5,60)")
    p.add_argument("--engines", default="numpy,torch",
                   help="engines for --startup: numpy, torch or both (default both)")
    args = p.parse_args(argv)
    args.startup_lengths = [float(v) for v in args.startup_lengths.split(",")][:2]
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]

    keep_heap()
    args.lengths = [3.0] if args.quick else [float(v) for v in args.lengths.split(",")]
    args.reps = args.reps or (1 if args.quick else 3)
    args.packet_frames = [1] if args.quick and args.packet_frames else \
        [int(v) for v in args.packet_frames.split(",") if v.strip()]
    args.anchors = parse_anchors(args.anchors, args.no_opus)
    args.anchor_kbps = [float(v) for v in args.anchor_kbps.split(",") if v.strip()]
    nwc = shlex.split(args.nwc) if args.nwc else [sys.executable, "-m", "nwc"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    files = corpus_files(args.corpus)
    tiers = nwc_tiers(nwc, env)
    if args.tiers:
        want = args.tiers.split(",")
        missing = [w for w in want if w not in {t["name"] for t in tiers}]
        if missing:
            raise SystemExit(f"not installed: {', '.join(missing)}")
        tiers = [t for t in tiers if t["name"] in want]
    if not tiers:
        raise SystemExit("no nwc tier installed")
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nwc-speed-") as tmp:
        if args.memory_hours:
            body = memory_table(args, nwc, env, tiers, files, notes, Path(tmp))
        elif args.startup:
            body = startup_tables(args, nwc, env, tiers, files, Path(tmp), notes)
        else:
            body = speed_tables(args, nwc, env, tiers, files, Path(tmp), notes)
            if not args.no_latency:
                notes.insert(0, framing_note(tiers))
    text = body + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    print(text, end="")
    if args.out_md:
        args.out_md.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
