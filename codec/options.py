"""How a stream is coded beyond its tier, as one value checked once.

The encoder's choices (layers, stereo coding, packet size) reach every packet together: a
frozen ``EncodeOptions`` travels from ``StreamEncoder`` to ``payload.encode_payload`` instead
of a tail of positional arguments that each caller must keep in order.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from . import stereo as sc
from .catalog import packet_framing
from .errors import CodecError
from .framing import Framing

if TYPE_CHECKING:
    from .anytier import Tier


@dataclass(frozen=True)
class EncodeOptions:
    """An encoder's choices; ``None`` means the tier's default."""

    layers: int | None = None          # code the first ``layers`` layers (default: all)
    stereo: str = "auto"               # two channels: auto, lr or ms (``stereo.py``)
    side_layers: int | None = None     # layers S carries in M/S packets
    packet_frames: int | None = None   # frames a packet (default: the tier's)
    band_limit: bool = True            # say where each packet's input ends (``bandlimit.py``)

    def checked(self, tier: Tier) -> EncodeOptions:
        """These options with ``layers`` resolved, or a ``CodecError`` naming the bad one."""
        self.framing(tier)
        if self.layers is not None and not 1 <= self.layers <= tier.layers:
            raise CodecError(f"tier {tier.name!r} has {tier.layers} layer(s), not {self.layers}")
        if self.stereo not in sc.STEREO_CHOICES:
            raise CodecError(f"stereo must be one of {', '.join(sc.STEREO_CHOICES)}, "
                             f"not {self.stereo!r}")
        if self.side_layers is not None and not (
                1 <= self.side_layers <= min(tier.layers - 1, sc.MAX_SIDE_LAYERS)
                or self.side_layers == tier.layers):
            raise CodecError(f"side layers must be 1 to {tier.layers} for tier {tier.name!r}, "
                             f"not {self.side_layers}")
        return replace(self, layers=self.layers or tier.layers)

    def framing(self, tier: Tier) -> Framing:
        """The tier's framing with this packet size."""
        try:
            return packet_framing(tier, self.packet_frames)
        except ValueError as e:
            raise CodecError(str(e)) from None
