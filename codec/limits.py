"""What the reference decoder accepts: limits that keep any stream's cost bounded.

A stream's header and packets declare lengths, rates and sequence numbers; a forged or
damaged one could ask for hours of silence or a resampler to a gigahertz. These limits are
written in ``formats/SPEC.md`` (section 7.1); beyond them a header is refused (one-line
error) and a gap or length is reported as damage instead of being filled. No torch, no numpy:
``nwc info`` applies the same limits.
"""

from __future__ import annotations

from ..formats.container import StreamHeader

MIN_RATE = 1_000  # Hz: sample_rate and original_rate (as `nwc decode --rate`)
MAX_RATE = 768_000
MAX_GAP_SECONDS = 60  # silence or concealment beyond the decoded audio, in all, per stream
MAX_DELAY_SECONDS = 1  # codec_delay
BLOCK = 1 << 14  # samples (tier rate) per block in which gaps and padding are emitted


def header_problem(h: StreamHeader) -> str | None:
    """Why the reference decoder refuses this header, or None."""
    for name in ("sample_rate", "original_rate"):
        rate = getattr(h, name)
        if not MIN_RATE <= rate <= MAX_RATE:
            return f"{name} {rate} Hz is outside {MIN_RATE}..{MAX_RATE} Hz"
    if h.codec_delay > MAX_DELAY_SECONDS * h.sample_rate:
        return f"codec_delay {h.codec_delay} is over {MAX_DELAY_SECONDS} s"
    return None


def max_gap(sample_rate: int) -> int:
    """Samples (at ``sample_rate``) a stream may fill beyond what its packets decode to."""
    return MAX_GAP_SECONDS * sample_rate


def gap_allowed(lost: int, gap: int, decoded: int, sample_rate: int) -> bool:
    """May a decoder that has filled ``lost`` and decoded ``decoded`` samples fill ``gap`` more?

    All fills together stay within the decoded audio plus ``MAX_GAP_SECONDS``: the output is
    at most twice what the packets justify plus the limit.
    """
    return lost + gap <= decoded + max_gap(sample_rate)
