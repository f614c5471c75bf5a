"""Codec: models, quantizers, entropy coding, training and the streaming API."""
