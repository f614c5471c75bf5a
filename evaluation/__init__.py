"""Objective quality of decoded audio (alignment, SI-SNR, PESQ-WB, STOI, ViSQOL): shared by
``nwc eval``, ``nwc encode --verify``, training's dev evaluation and the bench."""
