"""AMR-WB (G.722.2) anchor through Debian's shared libraries, driven by ctypes.

Debian ships no AMR-WB encoder program, only libraries:

* ``libvo-amrwbenc.so.0`` (package ``libvo-amrwbenc0``): VisualOn encoder,
  ``E_IF_init`` / ``E_IF_encode`` / ``E_IF_exit``.
* ``libopencore-amrwb.so.0`` (package ``libopencore-amrwb0``): OpenCORE decoder,
  ``D_IF_init`` / ``D_IF_decode`` / ``D_IF_exit``.

Both speak the RFC 4867 / 3GPP TS 26.201 *storage* format: one TOC byte per 20 ms frame
(``(FT << 3) | Q``, Q = 0x04) followed by the frame's payload. A ``.amr`` file is the
9-byte magic ``#!AMR-WB\\n`` followed by those frames, which is what :func:`encode` returns.

Input is 16 kHz mono int16, in 320-sample frames (the last frame is zero padded), so the
decoded signal is a whole number of frames long. It is *not* delay free: measured by
cross-correlation on the speech corpus, the output of this encoder/decoder pair trails the
input by 94-95 samples (about 5.9 ms: the codec's 5 ms look-ahead plus its 12.8 kHz
resampling filters), at every mode; FFmpeg's native AMR-WB decoder gives the same lag.
:func:`decode` returns the library output as is; ``bench/quality.py`` aligns every decoder's
output by cross-correlation. ``python bench/amrwb.py --check WAV`` prints the lag per mode.

Command line::

    python bench/amrwb.py encode IN.wav OUT.amr --mode 8
    python bench/amrwb.py decode IN.amr OUT.wav
    python bench/amrwb.py --check IN.wav
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import sys
from pathlib import Path

import numpy as np

MAGIC = b"#!AMR-WB\n"
SAMPLE_RATE = 16000
FRAME = 320  # samples per 20 ms frame at 16 kHz

#: Nominal bit rate (kbps) of each encoder mode.
MODE_KBPS = (6.60, 8.85, 12.65, 14.25, 15.85, 18.25, 19.85, 23.05, 23.85)

# Storage-format frame size in bytes (TOC byte included) for each frame type FT 0..15:
# modes 0-8, SID (9), reserved (10-13), speech lost (14), no data (15).
_FRAME_BYTES = (18, 24, 33, 37, 41, 47, 51, 59, 61, 6, 1, 1, 1, 1, 1, 1)

_ENC_LIB_NAMES = ("libvo-amrwbenc.so.0", "vo-amrwbenc")
_DEC_LIB_NAMES = ("libopencore-amrwb.so.0", "opencore-amrwb")


def _load(names: tuple[str, ...]) -> ctypes.CDLL:
    errors = []
    for name in names:
        candidate = name if name.startswith("lib") else ctypes.util.find_library(name)
        if not candidate:
            continue
        try:
            return ctypes.CDLL(candidate)
        except OSError as exc:
            errors.append(str(exc))
    raise OSError(
        f"cannot load any of {names} (install with bench/install.sh): " + "; ".join(errors)
    )


_enc_lib: ctypes.CDLL | None = None
_dec_lib: ctypes.CDLL | None = None


def _encoder_lib() -> ctypes.CDLL:
    global _enc_lib
    if _enc_lib is None:
        lib = _load(_ENC_LIB_NAMES)
        lib.E_IF_init.restype = ctypes.c_void_p
        lib.E_IF_init.argtypes = []
        lib.E_IF_encode.restype = ctypes.c_int
        lib.E_IF_encode.argtypes = [
            ctypes.c_void_p,  # state
            ctypes.c_int,  # mode 0..8
            ctypes.POINTER(ctypes.c_short),  # 320 input samples
            ctypes.POINTER(ctypes.c_ubyte),  # output frame (TOC + payload)
            ctypes.c_int,  # dtx
        ]
        lib.E_IF_exit.restype = None
        lib.E_IF_exit.argtypes = [ctypes.c_void_p]
        _enc_lib = lib
    return _enc_lib


def _decoder_lib() -> ctypes.CDLL:
    global _dec_lib
    if _dec_lib is None:
        lib = _load(_DEC_LIB_NAMES)
        lib.D_IF_init.restype = ctypes.c_void_p
        lib.D_IF_init.argtypes = []
        lib.D_IF_decode.restype = None
        lib.D_IF_decode.argtypes = [
            ctypes.c_void_p,  # state
            ctypes.POINTER(ctypes.c_ubyte),  # frame (TOC + payload)
            ctypes.POINTER(ctypes.c_short),  # 320 output samples
            ctypes.c_int,  # bfi: 0 = good frame
        ]
        lib.D_IF_exit.restype = None
        lib.D_IF_exit.argtypes = [ctypes.c_void_p]
        _dec_lib = lib
    return _dec_lib


def available() -> bool:
    """True when both libraries can be loaded."""
    try:
        _encoder_lib()
        _decoder_lib()
    except OSError:
        return False
    return True


def encode(pcm: np.ndarray, mode: int, dtx: bool = False) -> bytes:
    """Encode 16 kHz mono int16 ``pcm`` to a complete ``.amr`` (AMR-WB storage) file."""
    if not 0 <= mode <= 8:
        raise ValueError(f"AMR-WB mode must be 0..8, got {mode}")
    pcm = np.asarray(pcm)
    if pcm.ndim != 1:
        raise ValueError("AMR-WB input must be mono")
    if pcm.dtype != np.int16:
        raise TypeError(f"AMR-WB input must be int16, got {pcm.dtype}")
    n_frames = max(1, -(-len(pcm) // FRAME))
    padded = np.zeros(n_frames * FRAME, dtype=np.int16)
    padded[: len(pcm)] = pcm

    lib = _encoder_lib()
    state = lib.E_IF_init()
    if not state:
        raise RuntimeError("E_IF_init failed")
    out = bytearray(MAGIC)
    buf = (ctypes.c_ubyte * 64)()
    try:
        for i in range(n_frames):
            frame = np.ascontiguousarray(padded[i * FRAME : (i + 1) * FRAME])
            n = lib.E_IF_encode(
                state, mode, frame.ctypes.data_as(ctypes.POINTER(ctypes.c_short)), buf, int(dtx)
            )
            if n <= 0:
                raise RuntimeError(f"E_IF_encode returned {n} at frame {i}")
            out += bytes(buf[:n])
    finally:
        lib.E_IF_exit(state)
    return bytes(out)


def decode(data: bytes) -> np.ndarray:
    """Decode a ``.amr`` AMR-WB storage file to 16 kHz mono int16 (whole frames)."""
    if not data.startswith(MAGIC):
        raise ValueError("not an AMR-WB storage file (missing '#!AMR-WB\\n')")
    lib = _decoder_lib()
    state = lib.D_IF_init()
    if not state:
        raise RuntimeError("D_IF_init failed")
    frames: list[np.ndarray] = []
    pos = len(MAGIC)
    frame_buf = (ctypes.c_ubyte * 64)()
    try:
        while pos < len(data):
            ft = (data[pos] >> 3) & 0x0F
            size = _FRAME_BYTES[ft]
            chunk = data[pos : pos + size]
            if len(chunk) < size:
                raise ValueError(f"truncated AMR-WB frame at byte {pos}")
            ctypes.memmove(frame_buf, chunk, size)
            synth = np.zeros(FRAME, dtype=np.int16)
            lib.D_IF_decode(
                state, frame_buf, synth.ctypes.data_as(ctypes.POINTER(ctypes.c_short)), 0
            )
            frames.append(synth)
            pos += size
    finally:
        lib.D_IF_exit(state)
    if not frames:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate(frames)


def estimate_lag(ref: np.ndarray, deg: np.ndarray, max_lag: int = 2000) -> int:
    """Integer lag (samples) by which ``deg`` trails ``ref``, from FFT cross-correlation."""
    from scipy.signal import correlate

    a = np.asarray(ref, dtype=np.float64)
    b = np.asarray(deg, dtype=np.float64)
    xc = correlate(b, a, mode="full", method="fft")
    lags = np.arange(-len(a) + 1, len(b))
    keep = np.abs(lags) <= max_lag
    return int(lags[keep][np.argmax(xc[keep])])


def _read_wav16(path: str) -> np.ndarray:
    import soundfile as sf

    pcm, sr = sf.read(path, dtype="int16", always_2d=True)
    if sr != SAMPLE_RATE:
        raise SystemExit(f"{path}: AMR-WB needs 16 kHz input, got {sr} Hz")
    return pcm[:, 0].copy()


def main(argv: list[str] | None = None) -> int:
    import soundfile as sf

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--check", metavar="WAV", help="encode+decode WAV at every mode, print lags")
    sub = p.add_subparsers(dest="cmd")
    pe = sub.add_parser("encode")
    pe.add_argument("inp")
    pe.add_argument("out")
    pe.add_argument("--mode", type=int, default=8)
    pe.add_argument("--dtx", action="store_true")
    pd = sub.add_parser("decode")
    pd.add_argument("inp")
    pd.add_argument("out")
    args = p.parse_args(argv)

    if args.check:
        pcm = _read_wav16(args.check)
        dur = len(pcm) / SAMPLE_RATE
        for mode, kbps in enumerate(MODE_KBPS):
            data = encode(pcm, mode)
            out = decode(data)
            lag = estimate_lag(pcm, out)
            print(
                f"mode {mode} ({kbps:5.2f} kbps): {len(data)} bytes, "
                f"real {len(data) * 8 / dur / 1000:.2f} kbps, "
                f"decoded {len(out)} samples for {len(pcm)}, lag {lag}"
            )
        return 0
    if args.cmd == "encode":
        Path(args.out).write_bytes(encode(_read_wav16(args.inp), args.mode, args.dtx))
        return 0
    if args.cmd == "decode":
        sf.write(args.out, decode(Path(args.inp).read_bytes()), SAMPLE_RATE, subtype="PCM_16")
        return 0
    p.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
