"""Bitstream overhead of each tier against the ideal code entropy.

For each clip, encodes through the real encoder and container and splits the file size into:
ideal code bits (information content of the symbols under the tier's integer tables), range
coder payload (the coded words), gain side info, and container framing (header, packet
headers, CRCs, END packet). Prints one row per tier.

    python bench/overhead.py DATA_DIR [--clips 16] [--tiers a,b]
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from nwc.codec import api, catalog
from nwc.codec import tier as tiers
from nwc.formats.container import ContainerWriter
from nwc.train.data import load_mono


def measure(t: tiers.Tier, clips: list[np.ndarray]) -> dict:
    ideal = payload = side = total = 0.0
    seconds = 0.0
    f = t.framing
    for x in clips:
        packets = api.encode_array(t, x, t.sample_rate)
        buf = io.BytesIO()
        w = ContainerWriter(buf, api.header_for(t, t.sample_rate, 1, x.shape[0]))
        for p in packets:
            w.write(p)
            n = f.frames_for(p.granule - p.seq * f.packet_hop)
            for k, layer in enumerate(p.layers):
                ideal += api.layer_ideal_bits(t, k, layer, n)
                payload += 8 * len(layer)
            side += 8 * len(p.side)
        w.write_end(len(packets), x.shape[0], x.shape[0])
        total += 8 * w.bytes_written
        seconds += x.shape[0] / t.sample_rate
    return {"seconds": seconds, "ideal_kbps": ideal / seconds / 1e3,
            "payload_kbps": payload / seconds / 1e3, "side_kbps": side / seconds / 1e3,
            "file_kbps": total / seconds / 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--tiers", default="")
    a = ap.parse_args()
    files = sorted(Path(a.data).rglob("*.wav"))
    files = files[:: max(1, len(files) // a.clips)][: a.clips]
    names = a.tiers.split(",") if a.tiers else sorted(catalog.available())
    print("| tier | audio s | ideal code kbps | range-coded kbps | gain kbps | file kbps "
          "| coder overhead | coder+side+container overhead |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        t = tiers.load(name)
        clips = [load_mono(p, t.sample_rate) for p in files]
        m = measure(t, clips)
        coder = m["payload_kbps"] / m["ideal_kbps"] - 1
        allo = m["file_kbps"] / m["ideal_kbps"] - 1
        print(f"| {name} | {m['seconds']:.1f} | {m['ideal_kbps']:.3f} | {m['payload_kbps']:.3f} "
              f"| {m['side_kbps']:.3f} | {m['file_kbps']:.3f} | {100 * coder:.2f} % "
              f"| {100 * allo:.2f} % |")


if __name__ == "__main__":
    main()
