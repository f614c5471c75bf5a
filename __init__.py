"""nwc: a neural waveform codec (NWC modules, entropy-coded .nwc container, CLI)."""

__version__ = "0.1.0"
