"""Checkpoint converters: PyTorch / safetensors containers -> (config, Flax params).

One module per checkpoint family: `maskgit` (MaskGIT transformer + shortcut .pth), `taming` (VQGAN
last.ckpt + model.yaml), `dimoo` (LLaDA safetensors + DiMOO shortcut .pth), `diffusers` (the vqvae/ folder).
"""

from migm_jax.convert.diffusers import diffusers_vq
from migm_jax.convert.dimoo import dimoo_shortcut, llada
from migm_jax.convert.maskgit import maskgit_shortcut, maskgit_transformer
from migm_jax.convert.state_dict import CheckpointError
from migm_jax.convert.taming import taming_vqgan

__all__ = ["CheckpointError", "diffusers_vq", "dimoo_shortcut", "llada", "maskgit_shortcut", "maskgit_transformer",
           "taming_vqgan"]
