"""The tier type the stream coder is written against: either engine's loaded tier.

``tier.Tier`` (torch) and ``engine.NpTier`` (NumPy) expose the same coding attributes
(framing, tables, ``model.encode_frames``...). The alias exists for the type checker only, so
importing the stream coder never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .engine import NpTier
    from .tier import Tier as TorchTier

    Tier = TorchTier | NpTier
