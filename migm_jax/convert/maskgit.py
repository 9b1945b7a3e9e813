"""MaskGIT transformer (`MaskGIT_ImageNet_512.pth`) and MaskGIT shortcut (`maskgit-shortcut.pth`) converters.

Sizes are inferred from tensor shapes; head counts are not stored in the checkpoints and are
arguments. Every key must be consumed and every shape must fit, or CheckpointError names them.
"""

from __future__ import annotations

import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from migm_jax.convert.state_dict import (CheckpointError, StateDict, check_shapes, count_indexed, shortcut_projections,
                                         shortcut_widths)
from migm_jax.convert.torch_file import load_torch_file
from migm_jax.models.maskgit import MaskTransformer, MaskTransformerConfig
from migm_jax.models.shortcut import MaskGITShortcut, MaskGITShortcutConfig

NCLASS = 1000


def _ff(sd: StateDict, prefix: str) -> dict:
    return {"fc1": sd.linear(f"{prefix}.net.0"), "fc2": sd.linear(f"{prefix}.net.3")}


def check_heads(heads: int, flag: str) -> None:
    """ValueError unless `heads` is a whole number >= 1 (head counts are not stored in the checkpoints)."""
    if isinstance(heads, bool) or not isinstance(heads, (int, np.integer)) or heads < 1:
        raise ValueError(f"{flag} must be a number of attention heads >= 1, got {heads}")


def transformer_config_from_state_dict(tensors: dict, heads: int) -> MaskTransformerConfig:
    """Infers hidden/depth/mlp/grid/codebook from shapes (nclass fixed at 1000 as in the original)."""
    try:
        vocab, hidden = tensors["tok_emb.weight"].shape
        seq_len = tensors["pos_emb"].shape[1]
        mlp = tensors["transformer.layers.0.1.fn.net.0.weight"].shape[0]
    except KeyError as e:
        raise CheckpointError(f"MaskGIT transformer checkpoint lacks key {e}; is this a MaskGIT .pth?") from None
    check_heads(heads, "--heads")
    depth = count_indexed(tensors, "transformer.layers")
    grid = math.isqrt(seq_len - 1)
    if grid * grid + 1 != seq_len:
        raise CheckpointError(f"pos_emb length {seq_len} is not grid^2 + 1")
    if hidden % heads:
        raise CheckpointError(f"hidden size {hidden} is not divisible by heads={heads}; pass the right --heads")
    return MaskTransformerConfig(hidden=hidden, depth=depth, heads=heads, mlp_dim=mlp,
                                 codebook_size=vocab - NCLASS - 2, nclass=NCLASS, grid=grid)


def transformer_params(tensors: dict, cfg: MaskTransformerConfig, source: str) -> dict:
    """Maps the MaskTransformer state dict 1:1 to the Flax params tree and checks it."""
    sd = StateDict(tensors, source)
    p: dict[str, Any] = {
        "tok_emb": {"embedding": sd.get("tok_emb.weight")},
        "pos_emb": sd.get("pos_emb"),
        "bias": sd.get("bias"),
        "first_ln_a": sd.norm("first_layer.0"),
        "first_dense_a": sd.linear("first_layer.2"),
        "first_ln_b": sd.norm("first_layer.4"),
        "first_dense_b": sd.linear("first_layer.6"),
        "last_ln_a": sd.norm("last_layer.0"),
        "last_dense": sd.linear("last_layer.2"),
        "last_ln_b": sd.norm("last_layer.4"),
    }
    for i in range(cfg.depth):
        pre = f"transformer.layers.{i}"
        p[f"blocks_{i}"] = {
            "attn_norm": sd.norm(f"{pre}.0.norm"),
            "attn": sd.fused_qkv(f"{pre}.0.fn.mha"),
            "ff_norm": sd.norm(f"{pre}.1.norm"),
            "ff": _ff(sd, f"{pre}.1.fn"),
        }
    sd.finish()
    dummy = (jnp.zeros((1, cfg.grid, cfg.grid), jnp.int32), jnp.zeros((1,), jnp.int32), jnp.zeros((1,), bool))
    expected = jax.eval_shape(lambda: MaskTransformer(cfg).init(jax.random.PRNGKey(0), *dummy))["params"]
    check_shapes(p, expected, source, sd.origin_of)
    return p


def maskgit_transformer(path: str | os.PathLike, heads: int = 16) -> tuple[MaskTransformerConfig, dict]:
    """Reads a MaskGIT `.pth` container ({'model_state_dict': ...}) -> (config, params)."""
    obj = load_torch_file(path)
    tensors = obj.get("model_state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(tensors, dict):
        raise CheckpointError(f"{path}: expected a dict with 'model_state_dict', got {type(obj).__name__}")
    tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    cfg = transformer_config_from_state_dict(tensors, heads)
    return cfg, transformer_params(tensors, cfg, str(path))


def shortcut_config_from_state_dict(tensors: dict, heads: int) -> MaskGITShortcutConfig:
    """Infers n_block, bottleneck ratio and embed_t from the keys and shapes."""
    check_heads(heads, "--shortcut-heads")
    width, hidden = shortcut_widths(tensors, "blocks.0.cross_attn.norm.weight", "MaskGIT")
    n_block = count_indexed(tensors, "blocks")
    if width % heads:
        raise CheckpointError(f"shortcut width {width} is not divisible by heads={heads}; pass the right --shortcut-heads")
    return MaskGITShortcutConfig(hidden=hidden, heads=heads, n_block=n_block,
                                 bottleneck_ratio=round(hidden / width), embed_t="adaLN_modulation.weight" in tensors)


def shortcut_params(tensors: dict, cfg: MaskGITShortcutConfig, source: str) -> dict:
    """Maps the MaskGITShortcut state dict 1:1 to the Flax params tree and checks it."""
    sd = StateDict(tensors, source)
    p: dict[str, Any] = {
        "last_ln_a": sd.norm("last_layer.0"),
        "last_dense": sd.linear("last_layer.1"),
        "last_ln_b": sd.norm("last_layer.3"),
        **shortcut_projections(sd, cfg.bottleneck_ratio != 1, cfg.embed_t),
    }
    for i in range(cfg.n_block):
        pre = f"blocks.{i}"
        block = {}
        for part in ("cross_attn", "self_attn"):
            block[f"{part}_norm"] = sd.norm(f"{pre}.{part}.norm")
            block[part] = sd.fused_qkv(f"{pre}.{part}.fn.mha")
            block[f"{part}_ff_norm"] = sd.norm(f"{pre}.{part}_ff.norm")
            block[f"{part}_ff"] = _ff(sd, f"{pre}.{part}_ff.fn")
        p[f"blocks_{i}"] = block
    sd.finish()
    t = 3
    feat = jnp.zeros((1, t, cfg.hidden), jnp.float32)
    expected = jax.eval_shape(lambda: MaskGITShortcut(cfg).init(
        jax.random.PRNGKey(0), feat, feat, jnp.ones((1, t), bool), jnp.ones((1,), jnp.float32)))["params"]
    check_shapes(p, expected, source, sd.origin_of)
    return p


def maskgit_shortcut(path: str | os.PathLike, heads: int = 16) -> tuple[MaskGITShortcutConfig, dict]:
    """Reads a flat MaskGITShortcut state dict `.pth` -> (config, params)."""
    tensors = load_torch_file(path)
    if not isinstance(tensors, dict) or not all(isinstance(v, np.ndarray) for v in tensors.values()):
        raise CheckpointError(f"{path}: expected a flat state dict of tensors")
    tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    cfg = shortcut_config_from_state_dict(tensors, heads)
    return cfg, shortcut_params(tensors, cfg, str(path))
