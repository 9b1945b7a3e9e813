"""migm-jax: MIGM-Shortcut (masked image generation with learned latent shortcuts) in JAX/Flax."""

__version__ = "0.1.0"
