"""Shipped tiers: NAME.safetensors + NAME.json."""
