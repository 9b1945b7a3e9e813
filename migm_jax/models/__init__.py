"""Flax models: MaskGIT transformer, taming VQGAN, LLaDA (Lumina-DiMOO), diffusers VQ model, shortcuts."""
