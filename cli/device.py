"""``--device``: where the networks run, and the tier loaded for that engine.

``auto`` and ``cpu`` run the NumPy engine (no torch import, ``codec/engine.py``); ``cuda[:N]``
runs torch there. A choice that cannot fail waits (``defer``) until the command loads its
model, so a command that fails before that never pays for the decision.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .common import Fatal

if TYPE_CHECKING:
    from ..codec.engine import NpTier
    from ..codec.tier import Tier

_deferred: str | None = None   # a device choice waiting for the model to load
_torch_engine = False          # whether use_device() chose torch (cuda) over the NumPy engine


def defer(name: str | None) -> None:
    """Apply ``name`` when the model loads (``model_device``); None forgets a pending one."""
    global _deferred
    _deferred = name


def model_device() -> None:
    """Apply the device choice ``defer`` kept (imports torch for cuda); otherwise nothing.

    Commands call this right before they load their model.
    """
    global _deferred
    if _deferred is not None:
        name, _deferred = _deferred, None
        use_device(name)


def use_device(name: str) -> None:
    """Run the model on ``name`` in this process; a missing GPU is a one-line error."""
    from ..codec import engine

    global _torch_engine
    engine.keep_freed_memory()  # no page-fault churn per packet (see there)
    try:
        _torch_engine = engine.uses_torch(name)
    except ValueError as e:
        raise Fatal(str(e)) from None
    if not _torch_engine:
        return
    if not engine.torch_available():
        raise Fatal(f"--device {name} needs torch, which is not installed: "
                    f"{engine.TORCH_HINT}, or use --device cpu")
    from ..codec import infer

    try:
        infer.use_device(infer.pick_device(name))
    except infer.DeviceError as e:
        raise Fatal(str(e)) from None


def torch_engine() -> bool:
    """Whether this process codes with torch (after ``model_device``)."""
    return _torch_engine


def load_tier(name: str, threads: int, weights_hash: str | None = None) -> Tier | NpTier:
    """Build tier ``name`` for the engine ``--device`` chose: NumPy on the CPU (milliseconds),
    torch on a GPU (imports torch: seconds). A stream's ``weights_hash`` picks the version of
    the tier that wrote it (an archived one after a retraining)."""
    from ..codec import engine

    model_device()
    if not torch_engine():
        engine.blas_threads(threads)
        return engine.load_numpy(name, weights_hash)
    import torch

    from ..codec import tier as tiers

    torch.set_num_threads(threads)
    return tiers.load(name, weights_hash)
