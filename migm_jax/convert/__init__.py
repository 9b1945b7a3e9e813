"""Checkpoint converters: PyTorch / safetensors containers -> (config, Flax params)."""
