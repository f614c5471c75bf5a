#!/usr/bin/env bash
# Continue the shipped training runs (weights/runs/NAME/) on a GPU machine for N minutes and
# bring their checkpoints back: the relay's GPU leg. Three steps:
#
#   bash bench/gpu_train.sh prepare [CORPUS] [MB]   # here: .gpu/ = wheels + a FLAC subset
#                                                   # (.gpu/speech or .gpu/music: CORPUS's name)
#   (device tool) run  command="bash bench/gpu_train.sh run 8"  carry=[".gpu"]
#   bash bench/gpu_train.sh bring FILES_AT          # here: checkpoints back into weights/runs/
#
# The GPU machine has torch, numpy, safetensors, click and tqdm but no network, so `prepare`
# downloads the other runtime wheels for its Python 3.12 and packs a subset of the corpus
# (the dev clips the trainer scores, then training files until MB megabytes of FLAC; the
# whole tree may not exceed 64 MiB). Each run resumes with the arguments in
# weights/runs/NAME/train-args (one per line, as docs/training.md gives them) plus
# `--device cuda` and a time budget N minutes past the checkpoint's. pesq/pystoi are not
# carried: the run's evaluations there report rates only; score the tier here after `bring`.
# A run trains on the data its weights/runs/NAME/data file names (`speech`, the default, or
# `music`); a run whose data was not prepared is skipped with a note, never trained on the
# other kind. A run with train-args but no checkpoint yet starts there from scratch.
# DEVICE=cpu runs the same leg on this machine (how it is tested).
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=${1:-}
shift || true

prepare() {
    local corpus=${1:-../corpus/speech} mb=${2:-40}
    local kind
    kind=$(basename "$corpus")
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    rm -rf .gpu/whl ".gpu/$kind" && mkdir -p .gpu/whl
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .gpu/whl \
        constriction==0.5.0 soundfile soxr crc32c cffi pycparser
    python3 - "$corpus" "$mb" "$kind" <<'EOF'
import sys
from pathlib import Path
import soundfile as sf
from nwc.train.data import list_audio
root, budget = Path(sys.argv[1]), float(sys.argv[2]) * 2**20
train, dev = list_audio(root)
dev = dev[:: max(1, len(dev) // 16)][:16]   # the clips the trainer scores (eval_clips 16)
out, used = Path(".gpu") / sys.argv[3], 0
def pack(p: Path, sub: str) -> int:
    x, sr = sf.read(str(p), dtype="int16", always_2d=True)
    q = out / sub / (p.relative_to(root).with_suffix(".flac").as_posix().replace("/", "_"))
    q.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(q), x, sr, format="FLAC")
    return q.stat().st_size
used += sum(pack(p, "dev") for p in dev)
for p in train[:: 3]:   # spread over the corpus's sources
    if used > budget:
        break
    used += pack(p, "train")
print(f"{out}: {used / 2**20:.1f} MiB of FLAC")
EOF
    du -sh .gpu
}

run() {
    local minutes=${1:-8} out=${OUT:-/tmp/gpu-out} device=${DEVICE:-cuda}
    mkdir -p "$out"
    local py=python3
    if [ "$device" != cpu ]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl
        python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site .
        export PYTHONPATH=/tmp/site
    elif [ -x .venv/bin/python ]; then
        py=.venv/bin/python
    fi
    for args in weights/runs/*/train-args; do
        local dir name budget kind resume
        dir=$(dirname "$args"); name=$(basename "$dir")
        kind=$(cat "$dir/data" 2>/dev/null || echo speech)
        if [ ! -d ".gpu/$kind" ]; then
            echo "skipped $name: its data ($kind) was not prepared" >&2
            continue
        fi
        resume=(--resume)
        if [ -f "$dir/ckpt.json" ]; then
            budget=$($py -c "import json,sys; print(json.load(open(sys.argv[1]))['elapsed'] / 60 + $minutes)" "$dir/ckpt.json")
        else
            budget=$minutes; resume=()   # prepared but never run: it starts here
        fi
        rm -rf "/tmp/$name.run" && cp -r "$dir" "/tmp/$name.run"
        mapfile -t extra < "$args"
        $py -m nwc train ".gpu/$kind" --out "$out/$name" --name "$name" "${resume[@]}" \
            --run-dir "/tmp/$name.run" "${extra[@]}" --device "$device" --threads "${THREADS:-4}" \
            --max-minutes "$budget" -q
        mkdir -p "$out/$name.run"
        cp "/tmp/$name.run/ckpt.json" "$(ls -t /tmp/$name.run/ckpt-*.safetensors | head -1)" \
            "$out/$name.run/"
    done
}

bring() {
    local at=${1:?files_at of the run}
    for d in "$at"/*.run; do
        local name dest
        name=$(basename "$d" .run); dest=weights/runs/$name
        [ -d "$dest" ] || { echo "no shipped run $name" >&2; exit 1; }
        rm -f "$dest"/ckpt-*.safetensors
        cp "$d"/* "$dest/"
        echo "$dest: $(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['step'], 'steps,', round(d['elapsed'] / 60, 1), 'min')" "$dest/ckpt.json")"
    done
}

case "$cmd" in
    prepare) prepare "$@" ;;
    run) run "$@" ;;
    bring) bring "$@" ;;
    *) echo "usage: bash bench/gpu_train.sh prepare [CORPUS] [MB] | run [MINUTES] | bring FILES_AT" >&2
       exit 2 ;;
esac
