"""Golden streams: the encoded bytes of every shipped tier on fixed inputs never change.

Refactoring the codec (engines, front ends, the tier-file reader) must not move a single bit
of a stream, or files written by an earlier nwc stop decoding. The digests in
``data/golden.json`` were taken with the code that first shipped these tiers; rebuild them
only for a deliberate format or weights change, with ``python tests/test_golden.py --update``
(and say why in the commit).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))
from conftest import speech_like  # noqa: E402
from nwc.codec import api, engine  # noqa: E402
from nwc.codec import tier as tiers  # noqa: E402
from nwc.formats.container import encode_header, encode_packet  # noqa: E402

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden.json"
SHIPPED = sorted(p.stem for p in tiers.SHIPPED_DIR.glob("*.json"))


def _inputs(rate: int) -> dict[str, tuple[np.ndarray, int]]:
    """Named inputs for a tier coding at ``rate``: synthetic mono and stereo, silence with a
    click, and the real recordings in ``data/`` (speech for 16 kHz tiers, music for others)."""
    stereo = speech_like(1.3, rate, channels=2, seed=3)
    stereo[:, 1] = 0.8 * stereo[:, 0] + 0.05 * stereo[:, 1]  # M/S-friendly
    click = np.zeros((rate // 2, 1), np.float32)
    click[rate // 4] = 0.9
    out = {"synthetic": (speech_like(1.7, rate, seed=2), rate),
           "stereo": (stereo, rate),
           "click": (click, rate),
           "resampled": (speech_like(0.9, 22050, seed=5), 22050)}
    real = "speech.flac" if rate == 16000 else "music.flac"
    x, sr = sf.read(str(DATA / real), dtype="float32", always_2d=True)
    out["real"] = (x, sr)
    return out


def digests(name: str, numpy_engine: bool = False) -> dict[str, str]:
    """sha256 of the header and packet bytes of ``name`` coding each input (all layers), with
    the torch engine or the NumPy one (the CLI's on the CPU)."""
    tier = engine.load_numpy(name) if numpy_engine else tiers.load(name)
    out = {}
    for key, (x, rate) in _inputs(tier.sample_rate).items():
        h = hashlib.sha256(encode_header(api.header_for(tier, rate, x.shape[1], x.shape[0])))
        for p in api.encode_array(tier, x, rate):
            h.update(encode_packet(p))
        out[key] = h.hexdigest()
    return out


@pytest.mark.parametrize("numpy_engine", [False, True], ids=["torch", "numpy"])
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_tier_streams_are_byte_identical(name: str, numpy_engine: bool) -> None:
    expected = json.loads(GOLDEN.read_text())
    assert name in expected, f"no golden digests for shipped tier {name}"
    assert digests(name, numpy_engine) == expected[name]


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python tests/test_golden.py --update")
    GOLDEN.write_text(json.dumps({n: digests(n) for n in SHIPPED}, indent=1) + "\n")
    print(f"wrote {GOLDEN}")
