"""Every example in the README's user guide runs as written (the shipped tiers, real files).

The Install block is what `.ci/run` executes; every other ```sh block of README.md runs here,
in order, as one bash script (`set -euo pipefail`) in a folder holding the inputs the guide
names: speech.wav, song.flac and a tiny training set voices/.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import soundfile as sf
from conftest import speech_like

README = Path(__file__).resolve().parent.parent / "README.md"


def guide_blocks() -> list[str]:
    """The ```sh blocks of README.md but the Install one."""
    text = README.read_text()
    blocks = re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M)
    return [b for b in blocks if "pip install" not in b]


def make_inputs(d: Path) -> None:
    sf.write(str(d / "speech.wav"), speech_like(2.0, 16000, 1, seed=11), 16000)
    with sf.SoundFile(str(d / "song.flac"), "w", 44100, 2, format="FLAC") as f:
        f.title, f.artist = "A Song", "A Band"
        f.write(speech_like(1.0, 44100, 2, seed=12))
    for sub, seconds, seed in (("train", 4.0, 13), ("train", 3.0, 14), ("dev", 2.0, 15)):
        (d / "voices" / sub).mkdir(parents=True, exist_ok=True)
        sf.write(str(d / "voices" / sub / f"{seed}.wav"), speech_like(seconds, 16000, 1, seed),
                 16000)


def test_guide_has_examples() -> None:
    blocks = guide_blocks()
    assert len(blocks) >= 5 and all("nwc " in b for b in blocks)


def test_every_guide_example_runs(tmp_path: Path) -> None:
    make_inputs(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "NWC_WEIGHTS"}  # the shipped tiers
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    script = "set -euo pipefail\n" + "\n".join(guide_blocks())
    r = subprocess.run(["bash", "-x", "-c", script], cwd=tmp_path, env=env,
                       capture_output=True, timeout=900)
    err = r.stderr.decode()
    assert r.returncode == 0, err[-4000:]
    assert "Traceback" not in err
    # What the guide promises, checked on what it made.
    assert sf.info(str(tmp_path / "speech.out.wav")).frames == 32000
    assert sf.info(str(tmp_path / "song.out.mp3")).format == "MP3"
    assert sf.info(str(tmp_path / "speech.pipe.wav")).frames == 32000
    assert (tmp_path / "first-100ms.raw").stat().st_size == 3200
    assert "exit 1: decoded what is there" in r.stdout.decode()
    assert sf.info(str(tmp_path / "padded.wav")).frames == 32000
    assert 0 < sf.info(str(tmp_path / "partial.wav")).frames < 32000
    assert (tmp_path / "nwc.1").read_text().startswith(".TH NWC 1")
    assert sorted(p.name for p in (tmp_path / "decoded").iterdir()) == ["song.flac",
                                                                        "speech.flac"]
