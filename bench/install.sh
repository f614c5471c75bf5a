#!/usr/bin/env bash
# Install the anchor codecs used by bench/quality.py from Debian packages, plus the Python
# metric packages into the active environment (or .venv next to the repository root).
#
#   opus-tools          opusenc / opusdec              (Opus, 6-32 kbps)
#   speex               speexenc / speexdec            (Speex wideband)
#   codec2              c2enc / c2dec                  (Codec 2, 8 kHz narrowband)
#   sox                 resampling for codec2 (16k <-> 8k)
#   ffmpeg              AAC-LC (native aac), G.722 (g722) and Vorbis (libvorbis) anchors
#   lame                lame                           (MP3, LAME CBR)
#   liblc3-tools        elc3 / dlc3                    (LC3, Bluetooth LE Audio)
#   libvo-amrwbenc0     VisualOn AMR-WB encoder library (driven by ctypes from bench/amrwb.py)
#   libopencore-amrwb0  OpenCORE AMR-WB decoder library (driven by ctypes from bench/amrwb.py)
#
# Usage: bash bench/install.sh     (as root, or with sudo available)
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
    opus-tools speex codec2 sox ffmpeg lame liblc3-tools libvo-amrwbenc0 libopencore-amrwb0

# Metrics. visqol-python is optional: quality.py drops the ViSQOL column when it is missing
# or cannot run offline.
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -n "${VIRTUAL_ENV:-}" ]; then PY="$VIRTUAL_ENV/bin/python";
    elif [ -x "$HERE/.venv/bin/python" ]; then PY="$HERE/.venv/bin/python";
    else PY="python3"; fi
fi
"$PY" -m pip install -q "pesq>=0.0.4" "pystoi>=0.3" soundfile numpy scipy "matplotlib>=3.7"
"$PY" -m pip install -q "visqol-python[lattice]" || "$PY" -m pip install -q visqol-python \
    || echo "note: visqol-python not installed (optional: the ViSQOL column is dropped)"

for exe in opusenc opusdec speexenc speexdec c2enc c2dec sox lame elc3 dlc3 ffmpeg; do
    command -v "$exe" >/dev/null || { echo "missing: $exe" >&2; exit 1; }
done
ENCODERS="$(ffmpeg -hide_banner -encoders 2>/dev/null)"  # not piped into grep -q: pipefail
for enc in aac g722 libvorbis; do
    grep -qw "$enc" <<<"$ENCODERS" || { echo "missing: ffmpeg encoder $enc" >&2; exit 1; }
done
for lib in libvo-amrwbenc.so.0 libopencore-amrwb.so.0; do
    "$PY" -c "import ctypes; ctypes.CDLL('$lib')" || { echo "missing: $lib" >&2; exit 1; }
done
echo "anchors installed"
