"""MaskGIT shortcut: predicts the next last-layer feature from the current one and the new tokens.

next_feat = prev_feat + S(prev_feat, new tokens, mask_ratio). The new tokens enter as keys/values of
a cross-attention; here they are given at every position with a boolean map, so shapes stay static
and masked-out keys get zero attention weight (equal to the original's gathered form).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from migm_jax.models.layers import (FeedForward, MultiHeadAttention, TimestepEmbedder, compact_keys, dense, gelu,
                                    layer_norm)
from migm_jax.models.maskgit import BLOCK_LN_EPS, OUTER_LN_EPS


@dataclasses.dataclass(frozen=True)
class MaskGITShortcutConfig:
    hidden: int = 768  # width of the base model's feature
    heads: int = 16
    n_block: int = 1
    bottleneck_ratio: int = 2
    embed_t: bool = True

    @property
    def width(self) -> int:
        return round(self.hidden / self.bottleneck_ratio)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MaskGITShortcutConfig":
        return cls(**d)


class ShortcutBlock(nn.Module):
    """Cross-attention to the new tokens, MLP, self-attention, MLP; all pre-norm residual.

    Only the query stream is normalised: cross-attn keys/values are the projected new tokens as they
    are, self-attn keys/values are the raw residual stream x.
    """

    heads: int
    dtype: jnp.dtype
    attention_impl: Optional[str]
    approximate_gelu: bool

    @nn.compact
    def __call__(self, x: jax.Array, new: jax.Array, new_map: jax.Array) -> jax.Array:
        width = x.shape[-1]
        attn = lambda name: MultiHeadAttention(self.heads, self.dtype, self.attention_impl, name=name)
        ff = lambda name: FeedForward(4 * width, self.dtype, self.approximate_gelu, name=name)
        norm = lambda name: layer_norm(BLOCK_LN_EPS, name)
        x = x + attn("cross_attn")(norm("cross_attn_norm")(x).astype(self.dtype), new, new_map)
        x = x + ff("cross_attn_ff")(norm("cross_attn_ff_norm")(x).astype(self.dtype))
        x = x + attn("self_attn")(norm("self_attn_norm")(x).astype(self.dtype), x)
        return x + ff("self_attn_ff")(norm("self_attn_ff_norm")(x).astype(self.dtype))


class MaskGITShortcut(nn.Module):
    """apply({'params': p}, prev_feat (b,T,C), new_token_emb (b,T,C), new_token_map (b,T) bool, mask_ratio (b,))
    -> next_feat (b,T,C) float32.

    new_token_emb: the base model's token + position embedding of the current tokens at every
    position; only positions where new_token_map is True are attended to.
    mask_ratio: fraction of image tokens still masked before this step, in [0, 1].
    attention_impl / approximate_gelu: speed settings as in MaskTransformer.
    max_new_tokens: if set, the keys are first compacted to this many slots (new positions first, in
    position order, the rest masked): same result whenever no row has more new tokens, far less work.
    """

    cfg: MaskGITShortcutConfig
    dtype: jnp.dtype = jnp.float32
    attention_impl: Optional[str] = None
    approximate_gelu: bool = False
    max_new_tokens: Optional[int] = None

    @nn.compact
    def __call__(self, prev_feat: jax.Array, new_token_emb: jax.Array, new_token_map: jax.Array,
                 mask_ratio: jax.Array) -> jax.Array:
        c, w = self.cfg, self.cfg.width
        project = c.bottleneck_ratio != 1
        if self.max_new_tokens is not None:
            new_token_emb, new_token_map, _ = compact_keys(new_token_emb, new_token_map, self.max_new_tokens)
        new = dense(w, self.dtype, "new_token_proj_in")(new_token_emb.astype(self.dtype)) if project else new_token_emb
        x = dense(w, self.dtype, "proj_in")(prev_feat.astype(self.dtype)) if project else prev_feat
        for i in range(c.n_block):
            x = ShortcutBlock(c.heads, self.dtype, self.attention_impl, self.approximate_gelu,
                              name=f"blocks_{i}")(x, new.astype(self.dtype), new_token_map)
        x = layer_norm(OUTER_LN_EPS, "last_ln_a")(x).astype(self.dtype)
        x = layer_norm(OUTER_LN_EPS, "last_ln_b")(gelu(dense(w, self.dtype, "last_dense")(x), self.approximate_gelu))
        if c.embed_t:
            t_emb = TimestepEmbedder(w, dtype=self.dtype, name="time_embedder")(mask_ratio * 1000.0)
            scale, shift = jnp.split(dense(2 * w, self.dtype, "adaLN_modulation")(t_emb).astype(jnp.float32), 2, -1)
            x = x * (1 + scale[:, None]) + shift[:, None]
        out = dense(c.hidden, self.dtype, "proj_out")(x.astype(self.dtype)) if project else x
        return prev_feat.astype(jnp.float32) + out.astype(jnp.float32)
