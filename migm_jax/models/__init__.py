"""Flax models: MaskGIT transformer, taming VQGAN, LLaDA (Lumina-DiMOO), diffusers VQ model, shortcuts."""

from migm_jax.models.dimoo_shortcut import DiMOOShortcut, DiMOOShortcutConfig
from migm_jax.models.llada import LLaDA, LLaDAConfig
from migm_jax.models.maskgit import MaskTransformer, MaskTransformerConfig
from migm_jax.models.shortcut import MaskGITShortcut, MaskGITShortcutConfig
from migm_jax.models.vqgan import VQGAN, VQGANConfig
from migm_jax.models.vqmodel import VQModel, VQModelConfig

__all__ = ["DiMOOShortcut", "DiMOOShortcutConfig", "LLaDA", "LLaDAConfig", "MaskGITShortcut", "MaskGITShortcutConfig",
           "MaskTransformer", "MaskTransformerConfig", "VQGAN", "VQGANConfig", "VQModel", "VQModelConfig"]
