"""Architecture configs of a tier (stored in its JSON): plain dataclasses, no torch.

Both engines build their networks from these (``model.py``/``cascade.py`` in torch,
``npengine.py`` in NumPy), so the topology has one definition.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class NWCConfig:
    """Architecture and quantizer of one NWC module (stored in the tier JSON)."""

    plan: str = "fast"
    frame: int = 512
    channels: int = 128          # wide channels of the residual stacks
    narrow: int = 64             # channels inside a gated block
    code_channels: int = 8
    kernel: int = 5              # depthwise kernel of the gated blocks
    fb_kernel: int = 32          # analysis/synthesis filterbank length (fast plan)
    fb_stride: int = 8
    quantizer: str = "noise"     # "noise" | "softmax"
    levels: int = 31             # symbols per code
    harp: int = 0                # HARP-Net skip code channels (0 = plain autoencoder)

    def to_dict(self) -> dict:
        d = asdict(self)
        if not d["harp"]:  # absent in tiers from before HARP-Net: keeps their hash unchanged
            del d["harp"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> NWCConfig:
        return cls(**d)

@dataclass
class CascadeConfig:
    """Stages, LPC front end and the shared NWC architecture (stored in the tier JSON)."""

    nwc: NWCConfig = field(default_factory=NWCConfig)
    stages: int = 1
    lpc: bool = False
    res_scale: float = 4.0
    lsf_levels: int = 127

    def to_dict(self) -> dict:
        return {"nwc": self.nwc.to_dict(), "stages": self.stages, "lpc": self.lpc,
                "res_scale": self.res_scale, "lsf_levels": self.lsf_levels}

    @classmethod
    def from_dict(cls, d: dict) -> CascadeConfig:
        d = dict(d)
        return cls(nwc=NWCConfig.from_dict(d.pop("nwc")), **d)
