"""MaskGIT bidirectional transformer (valeoai MaskGIT-pytorch v1.0, as used by MIGM-Shortcut).

Token ids: 0..K-1 codes, K = mask token, K+1+label = class tokens, K+1+nclass = dropped class.
Sequence = the flattened code grid followed by one class token (length T = grid^2 + 1).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from migm_jax.models.layers import FeedForward, MultiHeadAttention, dense, fold_kv_biases, gelu, layer_norm

OUTER_LN_EPS = 1e-12  # first_layer / last_layer LayerNorms
BLOCK_LN_EPS = 1e-5  # pre-norm LayerNorms inside the encoder blocks


@dataclasses.dataclass(frozen=True)
class MaskTransformerConfig:
    hidden: int = 768
    depth: int = 24
    heads: int = 16
    mlp_dim: int = 3072
    codebook_size: int = 1024
    nclass: int = 1000
    grid: int = 32  # tokens per image side

    def __post_init__(self):
        if self.heads < 1 or self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not divisible by heads={self.heads}; give a head count that "
                             "divides it")

    @property
    def seq_len(self) -> int:
        return self.grid * self.grid + 1

    @property
    def vocab(self) -> int:
        return self.codebook_size + 1 + self.nclass + 1

    @property
    def mask_id(self) -> int:
        return self.codebook_size

    @classmethod
    def preset(cls, size: str, grid: int = 32) -> "MaskTransformerConfig":
        """'base' (768x24), 'big' (1024x32), 'huge' (1024x48); 16 heads, MLP 3072."""
        hidden, depth = {"base": (768, 24), "big": (1024, 32), "huge": (1024, 48)}[size]
        return cls(hidden=hidden, depth=depth, heads=16, mlp_dim=3072, grid=grid)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MaskTransformerConfig":
        return cls(**d)


class EncoderBlock(nn.Module):
    """Pre-norm block: x + Attn(LN(x)), then x + FF(LN(x))."""

    cfg: MaskTransformerConfig
    dtype: jnp.dtype
    attention_impl: Optional[str]
    approximate_gelu: bool
    kv_bias: bool
    class_token_apart: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, key_lengths: Optional[jax.Array] = None) -> jax.Array:
        h = layer_norm(BLOCK_LN_EPS, "attn_norm")(x).astype(self.dtype)
        attn = MultiHeadAttention(self.cfg.heads, self.dtype, self.attention_impl, self.kv_bias,
                                  self.class_token_apart, name="attn")
        x = x + attn(h, key_lengths=key_lengths)
        h = layer_norm(BLOCK_LN_EPS, "ff_norm")(x).astype(self.dtype)
        return x + FeedForward(self.cfg.mlp_dim, self.dtype, self.approximate_gelu, name="ff")(h)


class MaskTransformer(nn.Module):
    """apply({'params': p}, codes (b,g,g) int32, labels (b,) int32, drop_label (b,) bool)
    -> (logits (b, g*g, K) float32, feat (b, g*g+1, hidden) float32).

    `feat` is the last-layer feature (output of last_layer, input of the tied head) that the
    shortcut model evolves; `head(feat)` turns any such feature into logits.
    `attention_impl`: None (exact XLA path) | 'cudnn' | 'xla'; `approximate_gelu`: tanh GELU (speed, bf16);
    `kv_bias=False`: attention without key/value biases, for params from `without_kv_biases` (same function).
    `class_token_apart`: attention through `attention_last_key_apart` (the fused kernel at T = grid^2, the
    class token's key merged by its softmax weight, its query apart; the same function; needs attention_impl
    'cudnn' or 'xla'). `seq_multiple`: the blocks run on the sequence right-padded with zero rows to a multiple of this (cuDNN's
    fused attention backward takes only some lengths, e.g. not T = 257); the padding is never attended to
    and is dropped, so every real position computes the same function.
    """

    cfg: MaskTransformerConfig
    dtype: jnp.dtype = jnp.float32
    attention_impl: Optional[str] = None
    approximate_gelu: bool = False
    kv_bias: bool = True
    seq_multiple: int = 1
    class_token_apart: bool = False

    def setup(self):
        c = self.cfg
        self.tok_emb = nn.Embed(c.vocab, c.hidden, param_dtype=jnp.float32, name="tok_emb")
        self.pos_emb = self.param("pos_emb", nn.initializers.truncated_normal(0.02), (1, c.seq_len, c.hidden))
        self.bias = self.param("bias", nn.initializers.zeros, (c.seq_len, c.vocab))
        self.first_ln_a = layer_norm(OUTER_LN_EPS)
        self.first_dense_a = dense(c.hidden, self.dtype)
        self.first_ln_b = layer_norm(OUTER_LN_EPS)
        self.first_dense_b = dense(c.hidden, self.dtype)
        if self.class_token_apart and (self.attention_impl is None or self.seq_multiple > 1):
            raise ValueError("class_token_apart needs attention_impl 'cudnn' or 'xla' and no seq_multiple")
        self.blocks = [EncoderBlock(c, self.dtype, self.attention_impl, self.approximate_gelu, self.kv_bias,
                                    self.class_token_apart) for _ in range(c.depth)]
        self.last_ln_a = layer_norm(OUTER_LN_EPS)
        self.last_dense = dense(c.hidden, self.dtype)
        self.last_ln_b = layer_norm(OUTER_LN_EPS)

    def input_ids(self, codes: jax.Array, labels: jax.Array, drop_label: jax.Array) -> jax.Array:
        """(b,g,g) codes + class token -> (b, g*g+1) ids."""
        c = self.cfg
        cls = jnp.where(drop_label, c.codebook_size + 1 + c.nclass, labels + c.codebook_size + 1)
        return jnp.concatenate([codes.reshape(codes.shape[0], -1), cls[:, None]], axis=1).astype(jnp.int32)

    def embed(self, ids: jax.Array) -> jax.Array:
        """Token + position embedding, (b, T) ids -> (b, T, hidden) float32 (also what the shortcut sees)."""
        return self.tok_emb(ids) + self.pos_emb

    def features(self, codes: jax.Array, labels: jax.Array, drop_label: jax.Array) -> jax.Array:
        """The last-layer feature (b, T, hidden), float32."""
        x = self.embed(self.input_ids(codes, labels, drop_label))
        x = gelu(self.first_dense_a(self.first_ln_a(x).astype(self.dtype)), self.approximate_gelu)
        x = self.first_dense_b(self.first_ln_b(x).astype(self.dtype))
        t = x.shape[1]
        pad = -t % self.seq_multiple
        lengths = None
        if pad:
            x = jnp.pad(x, ((0, 0), (0, pad), (0, 0)))
            lengths = jnp.full((x.shape[0],), t, jnp.int32)
        for block in self.blocks:
            x = block(x, lengths)
        x = x[:, :t]
        x = gelu(self.last_dense(self.last_ln_a(x).astype(self.dtype)), self.approximate_gelu)
        return self.last_ln_b(x)

    def head(self, feat: jax.Array) -> jax.Array:
        """Tied output head on the code positions and code classes: (b, T, hidden) -> (b, g*g, K) float32."""
        c = self.cfg
        n = c.grid * c.grid
        w = self.tok_emb.embedding[: c.codebook_size].astype(self.dtype)
        logits = jnp.einsum("btc,kc->btk", feat[:, :n].astype(self.dtype), w, preferred_element_type=jnp.float32)
        return logits + self.bias[:n, : c.codebook_size]

    def __call__(self, codes: jax.Array, labels: jax.Array, drop_label: jax.Array):
        feat = self.features(codes, labels, drop_label)
        return self.head(feat), feat


def without_kv_biases(params: dict) -> dict:
    """MaskTransformer params for `kv_bias=False`: every block's attention through `fold_kv_biases`."""
    return {name: dict(p, attn=fold_kv_biases(p["attn"])) if name.startswith("blocks_") else p
            for name, p in params.items()}
