"""Many files per command: ``nwc encode a.wav b.wav DIR/ -o OUT_DIR --jobs 4``.

The single-file commands stay as they are; :func:`batched` wraps one so that it also takes
several inputs (files, or folders searched recursively) with ``-o DIR``, runs the same
single-file code on each (in a process pool with ``--jobs``), and reports every failure at
the end, one line per file, exiting 1 if any failed. Each output is written atomically by the
single-file code, so a failed or interrupted file leaves nothing half-written. ``--device``
is an option of both modes; ``device.py`` applies it.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import common
from .device import defer, use_device
from .stdio import Terminated

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

# Suffixes a folder is searched for (files named explicitly are tried whatever their suffix).
AUDIO_SUFFIXES = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif",
                            ".aiff", ".aifc", ".au", ".snd", ".caf", ".w64", ".rf64", ".sf",
                            ".voc", ".mat", ".pvf", ".xi", ".htk", ".sd2", ".avr", ".wve",
                            ".paf", ".ircam", ".mpc", ".nist", ".sph"})
STREAM_SUFFIXES = frozenset({".nwc"})

# The undecorated single-file command bodies, by command name; a worker process imports the
# body's module (``_job``), which puts it here.
_COMMANDS: dict[str, Callable[..., None]] = {}


@dataclass
class Job:
    """One input file and the output it is coded to (or why it cannot be)."""

    inp: str
    out: str = ""
    error: str = ""


def batch_options(fn: Callable) -> Callable:
    """The ``-o/--out-dir``, ``-j/--jobs`` and ``--device`` options of encode and decode."""
    fn = click.option(
        "--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]",
        help="Where the model runs: auto and cpu run the NumPy engine on the CPU, cuda[:N] "
             "runs torch on that GPU. Range coding, gains and framing always run on the CPU "
             "from integer tables.")(fn)
    fn = click.option(
        "-j", "--jobs", type=click.IntRange(0, 1024), default=1, show_default=True,
        help="Files coded in parallel with -o (processes; 0 = one per CPU).")(fn)
    return click.option(
        "-o", "--out-dir", type=click.Path(file_okay=False),
        help="Code every IN (files, or folders searched recursively) into this folder.")(fn)


def batched(kind: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Let a single-file ``IN OUT`` command also take ``IN... -o DIR``.

    Click gives the wrapped command ``inp`` (all IN arguments but the last) and ``out`` (the
    last one); with ``-o`` every argument is an input.
    """

    def deco(fn: Callable[..., None]) -> Callable[..., None]:
        _COMMANDS[kind] = fn

        @functools.wraps(fn)
        def wrapper(*, inp: tuple[str, ...], out: str, out_dir: str | None, jobs: int,
                    device: str, **kw) -> None:
            if kw.get("threads", 1) > 1:
                # libgomp's spin-waiting threads collapse these small per-packet convolutions
                # (measured 1.6x real time instead of 70x on a 2-vCPU VM); sleep instead. Read
                # when torch loads, so before the first import (workers inherit it).
                os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            defer(None)
            if out_dir is None:
                if len(inp) != 1:
                    raise click.UsageError("give IN OUT, or several inputs with -o DIR")
                if device in ("auto", "cpu"):
                    # These cannot fail, so they wait for device.model_device(), which the
                    # command calls right before it loads its model.
                    defer(device)
                else:
                    use_device(device)
                return fn(inp=inp[0], out=out, **kw)
            return _run_batch(kind, [*inp, out], Path(out_dir), jobs, device, kw)

        return wrapper

    return deco


def find_inputs(paths: list[str], kind: str, out_dir: Path, suffix: str) -> list[Job]:
    """Expand folders (recursively, sorted) and give each input its output path in ``out_dir``.

    A file given by name keeps its name; a file found in a folder keeps its path below that
    folder. Two inputs that would write the same output are refused (the later ones).
    """
    wanted = AUDIO_SUFFIXES if kind == "encode" else STREAM_SUFFIXES
    jobs: list[Job] = []
    taken: dict[Path, str] = {}
    for p in paths:
        if p == "-":
            raise click.UsageError("`-` (stdin) cannot be part of a batch; use IN OUT")
        path = Path(p)
        if path.is_dir():
            found = sorted(f for f in path.rglob("*")
                           if f.is_file() and f.suffix.lower() in wanted
                           and not f.name.startswith("."))
            if not found:
                what = "audio files" if kind == "encode" else ".nwc streams"
                jobs.append(Job(p, error=f"{p}: folder holds no {what}"))
            pairs = [(f, f.relative_to(path)) for f in found]
        elif path.exists():
            pairs = [(path, Path(path.name))]
        else:
            jobs.append(Job(p, error=f"{p}: no such file or folder"))
            continue
        for f, rel in pairs:
            dest = out_dir / rel.with_suffix(suffix)
            key = Path(os.path.abspath(dest))
            if key in taken:
                jobs.append(Job(str(f), error=f"{f}: same output {dest} as {taken[key]}"))
                continue
            taken[key] = str(f)
            jobs.append(Job(str(f), str(dest)))
    return jobs


def _run_batch(kind: str, paths: list[str], out_dir: Path, jobs: int, device: str,
               kw: dict) -> None:
    quiet = bool(kw.get("quiet"))
    if kind == "encode":
        suffix = ".nwc"
    else:
        suffix = "." + (kw.get("out_format") or "wav")
    todo = find_inputs(paths, kind, out_dir, suffix)
    use_device(device)  # a missing GPU fails once, here, not once per file
    out_dir.mkdir(parents=True, exist_ok=True)
    for j in todo:
        if not j.error:
            Path(j.out).parent.mkdir(parents=True, exist_ok=True)
    runnable = [j for j in todo if not j.error]
    module = _COMMANDS[kind].__module__
    workers = jobs or os.cpu_count() or 1
    if workers > 1 and len(runnable) > 1:
        seconds = sum(_audio_seconds(kind, j.inp) for j in runnable)
        fit = max(1, int(seconds // AUDIO_PER_WORKER)) if AUDIO_PER_WORKER > 0 else workers
        if fit < min(workers, len(runnable)):
            common.say(quiet, f"nwc: {seconds:.0f} s of audio in {len(runnable)} file(s): using "
                        f"{fit} process(es), not {min(workers, len(runnable))} (a worker costs "
                        f"a few seconds to start; each is worth it for {AUDIO_PER_WORKER} s)")
            workers = fit
    if workers > 1 and len(runnable) > 1:
        import multiprocessing  # here, not at start-up: single-file commands never need it
        from concurrent.futures import ProcessPoolExecutor

        # spawn: workers start clean (no inherited BLAS/torch threads or CUDA state); each
        # loads the tier once (and torch, for cuda) and then codes its share of the files.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(runnable)), mp_context=ctx,
                                 initializer=_worker_idle) as pool:
            try:
                futures = [(j, pool.submit(_pool_job, kind, module, j.inp, j.out, device, kw))
                           for j in runnable]
                for j, fut in futures:
                    j.error = fut.result()
            except BaseException as e:   # Ctrl-C, SIGTERM/SIGHUP (stdio.Terminated), a failure
                # Ctrl-C reached the workers too (one process group): let them clean up.
                codes = _stop(pool, grace=10.0 if type(e) is KeyboardInterrupt else 0.0)
                signals = [c - 128 for c in codes if c is not None and c - 128 in _SIGNALS]
                if signals and not isinstance(e, KeyboardInterrupt):
                    # A worker stopped by a signal broke the pool before this process saw
                    # its own copy of the signal: report the signal, not the broken pool.
                    raise (KeyboardInterrupt() if signals[0] == signal.SIGINT
                           else Terminated(signals[0])) from None
                raise
    else:
        for j in runnable:
            j.error = _job(kind, module, j.inp, j.out, None, kw)
    for j in todo:  # usage errors (bad option combinations) concern every file: exit 2
        if j.error.startswith(_USAGE):
            raise click.UsageError(j.error[len(_USAGE):])
    failed = [j for j in todo if j.error]
    verb = "encoded" if kind == "encode" else "decoded"
    common.say(quiet, f"nwc: {verb} {len(todo) - len(failed)} of {len(todo)} file(s) into {out_dir}"
                + (f"; {len(failed)} failed:" if failed else ""))
    for j in failed:
        click.echo(f"nwc: error: {j.error}", err=True)
    if failed:
        sys.exit(1)


_USAGE = "\0usage:"
# Seconds of audio that pay for starting one more worker process (torch and the tier load in
# each, 2-3 s on a small machine; the codec runs at about 20-70x real time there).
# NWC_AUDIO_PER_WORKER overrides it (0: always --jobs workers).
AUDIO_PER_WORKER = float(os.environ.get("NWC_AUDIO_PER_WORKER", "60"))


def _audio_seconds(kind: str, path: str) -> float:
    """A file's duration from its header alone (0 if unknown): sizes the worker pool."""
    try:
        if kind == "encode":
            import soundfile as sf

            return float(sf.info(path).duration)
        from ..formats.container import ContainerReader

        with open(path, "rb") as f:
            return ContainerReader(f).header.duration or 0.0
    except Exception:  # noqa: BLE001 - the job itself will report an unreadable file
        return 0.0


_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _stop(pool: ProcessPoolExecutor, grace: float) -> list[int | None]:
    """The batch is interrupted: drop the files not started, and signal the running workers
    (after ``grace`` seconds for them to exit on their own), which remove their temporary
    outputs and exit instead of finishing their files."""
    procs = list((getattr(pool, "_processes", None) or {}).values())  # no public handle
    pool.shutdown(wait=False, cancel_futures=True)   # (this forgets the processes)
    end = time.monotonic() + grace
    for proc in procs:
        proc.join(max(0.0, end - time.monotonic()))
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(10)
        if proc.is_alive():   # stuck: no output of its own to clean up any more
            proc.kill()
    return [proc.exitcode for proc in procs]


def _worker_idle() -> None:
    """A worker between files: Ctrl-C (sent to the whole process group) is the parent's to
    handle, SIGTERM ends it at once (it holds no output)."""
    signal.signal(signal.SIGINT, _ignore)   # Python handlers, not SIG_IGN/SIG_DFL: see
    for sig in (signal.SIGTERM, signal.SIGHUP):   # _interrupt_once
        signal.signal(sig, _exit_now)


def _exit_now(signum: int, _frame: object) -> None:
    os._exit(128 + signum)


def _ignore(_signum: int, _frame: object) -> None:
    pass


def _interrupt_once(signum: int, _frame: object) -> None:
    """A worker's first signal unwinds its file (removing the temporary output); any later
    one is ignored, so nothing cuts that clean-up short."""
    for sig in _SIGNALS:   # a no-op, not SIG_IGN: a signal already pending would then
        signal.signal(sig, _ignore)   # raise "ignored due to race condition" in the clean-up
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


def _pool_job(kind: str, module: str, inp: str, out: str, device: str | None, kw: dict
              ) -> str:
    """``_job`` in a worker: interruptible like the single-file command while it writes."""
    for sig in _SIGNALS:
        signal.signal(sig, _interrupt_once)
    try:
        return _job(kind, module, inp, out, device, kw)
    except KeyboardInterrupt as e:   # Ctrl-C or Terminated: its output is removed, and the
        os._exit(128 + getattr(e, "signum", signal.SIGINT))   # batch is over: take no more
    finally:
        _worker_idle()


def _job(kind: str, module: str, inp: str, out: str, device: str | None, kw: dict) -> str:
    """Code one file with the single-file command (its body defined in ``module``); returns
    '' or a one-line reason."""
    importlib.import_module(module)  # registers the body (in a fresh worker process)
    common.Progress.enabled = False  # one bar per file would garble a shared terminal
    try:
        if device is not None:
            use_device(device)
        _COMMANDS[kind](inp=inp, out=out, **kw)
    except click.ClickException as e:
        return _USAGE + e.format_message()
    except SystemExit as e:  # the command finished but said the result is incomplete
        if e.code in (0, None):
            return ""
        return f"{inp}: damaged or truncated stream (see the warnings above)"
    except Exception as e:  # noqa: BLE001 - reported per file, the batch goes on
        if kw.get("debug"):
            import traceback

            traceback.print_exc()
        msg = common.describe(e)
        return msg if msg.startswith(inp) else f"{inp}: {msg}"
    return ""
