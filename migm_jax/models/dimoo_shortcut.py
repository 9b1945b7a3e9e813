"""DiMOO shortcut (`MDMShortcut`): predicts the next post-ln_f LLaDA feature from the current one and the new tokens.

x = proj_in(prev_feat); per block: LLaDA cross block (queries from x, keys/values from the projected
new-token embeddings), then a LLaDA self-attention block; x = ln_f(x); x = x*(1+scale)+shift with
[scale|shift] = adaLN(TimestepEmbedder(1000*mask_ratio)) (no SiLU before adaLN); next = proj_out(x) + prev_feat.
The blocks keep the backbone's head count, KV heads, MLP width, RoPE theta and eps; only the width
shrinks to round(d_model / bottleneck_ratio).

The original gathers the n new tokens (batch 1 only). Here the new-token embedding is given at every
position with a boolean map: only mapped positions are keys/values, rotated at their own column index,
which equals the gathered form and works for any batch with a different map per row.

Precision: with dtype=bfloat16 and float32 params this reproduces the original's fp32-weights-under-
bf16-autocast rounding (see `migm_jax.models.llada` for RMSNorm/RoPE/SiLU).

Param tree (mirrors the `.pth` keys): `proj_in`, `proj_out`, `new_token_proj_in` (kernel, bias; absent when
bottleneck_ratio == 1), `blocks_<i>/{cross_attn,self_attn}/<LLaDABlock params>`, `ln_f/scale`,
`time_embedder/{mlp_0,mlp_2}` and `adaLN_modulation` (kernel, bias; only with embed_t).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from migm_jax.models.layers import TimestepEmbedder, compact_keys, dense
from migm_jax.models.llada import LLaDABlock, LLaDAConfig, RMSNorm

Dtype = Any


@dataclasses.dataclass(frozen=True)
class DiMOOShortcutConfig:
    d_model: int = 4096  # width of the backbone feature (input and output)
    n_block: int = 1
    bottleneck_ratio: float = 2.0
    embed_t: bool = True
    # inherited unchanged from the backbone config
    n_heads: int = 32
    n_kv_heads: int = 32
    mlp_hidden_size: int = 12288
    rope_theta: float = 500000.0
    rms_norm_eps: float = 1e-5

    @property
    def width(self) -> int:
        """Inner width round(d_model / bottleneck_ratio) (2048 for DiMOO)."""
        return round(self.d_model / self.bottleneck_ratio)

    @classmethod
    def from_llada(cls, base: LLaDAConfig, n_block: int = 1, bottleneck_ratio: float = 2.0,
                   embed_t: bool = True) -> "DiMOOShortcutConfig":
        """The shortcut built on `base` (defaults = the released dimoo-shortcut.pth)."""
        return cls(d_model=base.d_model, n_block=n_block, bottleneck_ratio=bottleneck_ratio, embed_t=embed_t,
                   n_heads=base.n_heads, n_kv_heads=base.n_kv_heads, mlp_hidden_size=base.mlp_hidden_size,
                   rope_theta=base.rope_theta, rms_norm_eps=base.rms_norm_eps)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DiMOOShortcutConfig":
        return cls(**d)


class ShortcutBlock(nn.Module):
    """Cross LLaDA block (keys = new tokens) then self-attention LLaDA block; submodules `cross_attn`, `self_attn`.

    x (b,T,w), new (b,K,w), new_map (b,K) bool, new_positions (b,K), positions (b,T),
    key_lengths (b,) | None -> (b,T,w). The new tokens are keys at `new_positions` where new_map is True.
    """

    cfg: DiMOOShortcutConfig
    dtype: Dtype
    attention_impl: Optional[str]

    @nn.compact
    def __call__(self, x: jax.Array, new: jax.Array, new_map: jax.Array, new_positions: jax.Array,
                 positions: jax.Array, key_lengths: Optional[jax.Array]) -> jax.Array:
        c = self.cfg
        block = lambda name: LLaDABlock(c.n_heads, c.n_kv_heads, c.mlp_hidden_size, c.rope_theta, c.rms_norm_eps,
                                        self.dtype, jnp.float32, self.attention_impl, name=name)
        x = block("cross_attn")(x, positions, kv=new, kv_positions=new_positions, key_mask=new_map)
        return block("self_attn")(x, positions, key_lengths=key_lengths)


class DiMOOShortcut(nn.Module):
    """apply({'params': p}, prev_feat (b,T,d), new_token_emb (b,T,d), new_token_map (b,T) bool, mask_ratio (b,),
    attn_mask (b,T) bool | None) -> next_feat (b,T,d).

    prev_feat: post-ln_f backbone feature of the current state. new_token_emb: the backbone's wte row of
    the current token at EVERY position; only positions where new_token_map is True are used (the others
    may hold anything). mask_ratio: masked fraction of the state whose feature is predicted (multiplied
    by 1000 for the timestep embedding). attn_mask: optional RIGHT-padding mask (True on a prefix of each
    row; False = padding, never a key of either attention); None = every position is valid, as in the original.
    A row whose map has no True entry gets a zero cross-attention output (the original's empty key set).
    max_new_tokens: if set, the new tokens are first compacted to this many key slots (`compact_keys`):
    the same result whenever no row has more new tokens, without T x T cross-attention work.
    Output dtype: `dtype` (bf16 under the original's autocast), float32 in float32.
    """

    cfg: DiMOOShortcutConfig
    dtype: Dtype = jnp.float32
    attention_impl: Optional[str] = None
    max_new_tokens: Optional[int] = None

    @nn.compact
    def __call__(self, prev_feat: jax.Array, new_token_emb: jax.Array, new_token_map: jax.Array,
                 mask_ratio: jax.Array, attn_mask: Optional[jax.Array] = None) -> jax.Array:
        c, w = self.cfg, self.cfg.width
        b, t, _ = prev_feat.shape
        prev = prev_feat.astype(self.dtype)
        positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
        new_map = new_token_map if attn_mask is None else new_token_map & attn_mask
        lengths = None if attn_mask is None else jnp.sum(attn_mask, axis=-1, dtype=jnp.int32)
        new, new_positions = new_token_emb, positions
        if self.max_new_tokens is not None:
            new, new_map, new_positions = compact_keys(new, new_map, self.max_new_tokens)
        new = new.astype(self.dtype)
        project = w != c.d_model
        if project:
            new = dense(w, self.dtype, "new_token_proj_in")(new)
            self.sow("intermediates", "new_token_proj_in_out", new)
            x = dense(w, self.dtype, "proj_in")(prev)
            self.sow("intermediates", "proj_in_out", x)
        else:
            x = prev
        for i in range(c.n_block):
            x = ShortcutBlock(c, self.dtype, self.attention_impl, name=f"blocks_{i}")(
                x, new, new_map, new_positions, positions, lengths)
        x = RMSNorm(c.rms_norm_eps, name="ln_f")(x)
        self.sow("intermediates", "ln_f_out", x)
        if c.embed_t:
            t_emb = TimestepEmbedder(w, dtype=self.dtype, name="time_embedder")(mask_ratio.astype(jnp.float32) * 1000.0)
            scale, shift = jnp.split(dense(2 * w, self.dtype, "adaLN_modulation")(t_emb), 2, axis=-1)
            x = x * (1 + scale[:, None]) + shift[:, None]
            self.sow("intermediates", "modulated", x)
        if project:
            x = dense(c.d_model, self.dtype, "proj_out")(x)
            self.sow("intermediates", "proj_out_out", x)
        return (prev + x).astype(self.dtype)
