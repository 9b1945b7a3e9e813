"""Building blocks shared by the MaskGIT-side models.

Conventions: activations are (batch, length, channels); params are stored in float32 and cast to
the module's compute `dtype`; LayerNorm statistics and attention softmax are always float32 (as
under PyTorch autocast).
"""

from __future__ import annotations

import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = jnp.dtype


def gelu(x: jax.Array, approximate: bool = False) -> jax.Array:
    """GELU computed in float32, returned in x's dtype; exact unless `approximate` (tanh form).

    Exact is PyTorch's `nn.GELU()` formula, x/2 * (1 + erf(x / sqrt 2)) (cheaper on GPU than the erfc
    form of `jax.nn.gelu`). The tanh form differs from it by < 5e-4, below bfloat16 resolution at the
    activations' scale; it is an opt-in speed setting for bf16 compute only.
    """
    xf = x.astype(jnp.float32)
    if approximate:
        return jax.nn.gelu(xf, approximate=True).astype(x.dtype)
    return (0.5 * xf * (1.0 + jax.lax.erf(xf * (1.0 / math.sqrt(2.0))))).astype(x.dtype)


def layer_norm(eps: float, name: Optional[str] = None) -> nn.LayerNorm:
    """LayerNorm computed and returned in float32 (params `scale`, `bias`).

    The variance is the mean of squared deviations, as PyTorch computes it (not E[x^2] - E[x]^2): more
    accurate, and on GPU XLA fuses statistics and normalisation into one pass over the row.
    """
    return nn.LayerNorm(epsilon=eps, dtype=jnp.float32, param_dtype=jnp.float32, use_fast_variance=False, name=name)


def dense(features: int, dtype: Dtype, name: Optional[str] = None, use_bias: bool = True) -> nn.Dense:
    return nn.Dense(features, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32, name=name)


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: Optional[jax.Array] = None,
                          implementation: Optional[str] = None, key_lengths: Optional[jax.Array] = None) -> jax.Array:
    """softmax(q k^T / sqrt(d)) v over heads.

    q: (b, Lq, h, d); k, v: (b, Lk, h, d) (h may be a divisor of q's heads for 'cudnn' / 'xla');
    key_mask: (b, Lk) bool, False keys get zero weight; key_lengths: (b,) int, only the first
    key_lengths keys of a row are keys (right padding; cuDNN handles this natively, without a mask
    tensor). Both may be given. `implementation=None` runs an XLA path with float32 logits and softmax
    (exact parity); 'cudnn' / 'xla' dispatch to `jax.nn.dot_product_attention` (flash attention on GPU).
    Returns (b, Lq, h, d) in q's dtype.
    """
    b, lq, lk = q.shape[0], q.shape[1], k.shape[1]
    if implementation is not None:
        mask = None if key_mask is None else jnp.broadcast_to(key_mask[:, None, None, :], (b, 1, lq, lk))
        lengths = None if key_lengths is None else key_lengths.astype(jnp.int32)
        return jax.nn.dot_product_attention(q, k, v, mask=mask, key_value_seq_lengths=lengths,
                                            implementation=implementation)
    if key_lengths is not None:
        in_prefix = jnp.arange(lk)[None, :] < key_lengths[:, None]
        key_mask = in_prefix if key_mask is None else key_mask & in_prefix
    scale = 1.0 / math.sqrt(q.shape[-1])
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) * scale
    if key_mask is not None:
        logits = jnp.where(key_mask[:, None, None, :], logits, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits, axis=-1)
    return jnp.einsum("bhqk,bkhd->bqhd", weights.astype(v.dtype), v)


def attention_last_key_apart(q: jax.Array, k: jax.Array, v: jax.Array, implementation: str) -> jax.Array:
    """The same softmax(q k^T / sqrt(d)) v over all L keys, with the fused kernel run at length L - 1 only.

    For a sequence whose length is one more than the kernel's fast size (MaskGIT: 1024 image tokens and the
    class token last): queries 0..L-2 attend to keys 0..L-2 in `jax.nn.dot_product_attention`
    (`implementation` 'cudnn' or 'xla'), which also returns each row's log-sum-exp; the last key joins by
    its softmax weight w = sigmoid(s_last - lse) (out = (1 - w) out_rest + w v_last, an identity); the
    last query attends to all L keys on the exact path. q, k, v: (b, L, h, d) -> (b, L, h, d).
    """
    rest, lse = jax.nn.dot_product_attention(q[:, :-1], k[:, :-1], v[:, :-1], implementation=implementation,
                                             return_residual=True)  # (b, L-1, h, d), (b, L-1, h)
    s_last = jnp.einsum("bqhd,bhd->bqh", q[:, :-1], k[:, -1], preferred_element_type=jnp.float32)
    w = jax.nn.sigmoid(s_last / math.sqrt(q.shape[-1]) - lse.astype(jnp.float32))[..., None]
    merged = (1.0 - w) * rest.astype(jnp.float32) + w * v[:, -1:].astype(jnp.float32)
    last = dot_product_attention(q[:, -1:], k, v)
    return jnp.concatenate([merged.astype(last.dtype), last], axis=1)


def attention_for(choice: str, dtype: str, backend: str) -> Optional[str]:
    """A CLI's --attention choice -> `implementation` for `dot_product_attention`: 'auto' is cuDNN's fused
    attention on a GPU in bfloat16 (it takes half-precision inputs only) and the exact path (None) elsewhere;
    'exact' is None; 'cudnn' / 'xla' as given."""
    if choice == "auto":
        return "cudnn" if backend == "gpu" and dtype == "bfloat16" else None
    return None if choice == "exact" else choice


def numerics_for(dtype: str, attention: str, backend: str) -> tuple[str, Optional[str]]:
    """A CLI's --dtype and --attention choices -> (compute dtype, `attention_for` implementation): dtype
    'auto' is float32 on CPU (faster there) and bfloat16 on GPU / TPU."""
    if dtype == "auto":
        dtype = "float32" if backend == "cpu" else "bfloat16"
    return dtype, attention_for(attention, dtype, backend)


def cast_kernels(params: dict, dtype: jnp.dtype) -> dict:
    """Casts matmul kernels to the compute dtype once, before the loop (norms, embeddings, biases keep float32).

    Numerically identical to the per-call cast inside the Dense layers; saves re-reading every fp32
    kernel at every step.
    """
    return jax.tree_util.tree_map_with_path(
        lambda path, x: x.astype(dtype) if getattr(path[-1], "key", None) == "kernel" else x, params)


def compact_keys(emb: jax.Array, key_map: jax.Array, slots: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Gathers the mapped keys into `slots` columns: mapped positions first, in position order, then the rest.

    emb: (b, L, C); key_map: (b, L) bool. Returns (emb (b, slots, C), key_map (b, slots), positions
    (b, slots) int32). Attention over the result (with its map as key mask) equals attention over the
    full map whenever no row has more than `slots` mapped keys, at a fraction of the work.
    """
    positions = jnp.argsort(~key_map, axis=1, stable=True)[:, :slots].astype(jnp.int32)
    emb = jnp.take_along_axis(emb, positions[..., None], axis=1)
    return emb, jnp.take_along_axis(key_map, positions, axis=1), positions


def fold_kv_biases(attn: dict) -> dict:
    """Attention params without key and value biases that compute the same function (float32 arithmetic).

    A key bias adds q . b_k to every logit of a query, which the softmax cancels; a value bias passes
    through the softmax average (weights sum to 1) and becomes b_v W_out, added to the output bias.
    attn: {'q','k','v','out'} params of `MultiHeadAttention`; the result is for `kv_bias=False`. Valid
    whenever every query attends to at least one key (always true for unmasked self-attention).
    """
    out = attn["out"]
    out_bias = out["bias"] + jnp.dot(attn["v"]["bias"], out["kernel"], precision=jax.lax.Precision.HIGHEST)
    return dict(attn, k={"kernel": attn["k"]["kernel"]}, v={"kernel": attn["v"]["kernel"]},
                out=dict(out, bias=out_bias))


class MultiHeadAttention(nn.Module):
    """`nn.MultiheadAttention` with separate q/k/v/out projections (bias everywhere unless `kv_bias=False`,
    which takes params from `fold_kv_biases` and saves two elementwise passes per call).

    __call__(x (b,Lq,C), kv (b,Lk,C) | None, key_mask (b,Lk) | None, key_lengths (b,) | None) -> (b,Lq,C);
    kv=None is self-attention; key_lengths as in `dot_product_attention` (right padding).
    """

    heads: int
    dtype: Dtype = jnp.float32
    attention_impl: Optional[str] = None
    kv_bias: bool = True
    last_key_apart: bool = False  # self-attention through `attention_last_key_apart` (needs attention_impl)

    @nn.compact
    def __call__(self, x: jax.Array, kv: Optional[jax.Array] = None, key_mask: Optional[jax.Array] = None,
                 key_lengths: Optional[jax.Array] = None) -> jax.Array:
        width = x.shape[-1]
        kv = x if kv is None else kv
        split = lambda t: t.reshape(t.shape[:-1] + (self.heads, width // self.heads))
        q = split(dense(width, self.dtype, "q")(x))
        k = split(dense(width, self.dtype, "k", use_bias=self.kv_bias)(kv))
        v = split(dense(width, self.dtype, "v", use_bias=self.kv_bias)(kv))
        if self.last_key_apart:
            out = attention_last_key_apart(q, k, v, self.attention_impl)
        else:
            out = dot_product_attention(q, k, v, key_mask, self.attention_impl, key_lengths)
        return dense(width, self.dtype, "out")(out.reshape(x.shape[:-1] + (width,)))


class FeedForward(nn.Module):
    """Linear -> GELU -> Linear (`fc1`, `fc2`)."""

    hidden: int
    dtype: Dtype = jnp.float32
    approximate_gelu: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = gelu(dense(self.hidden, self.dtype, "fc1")(x), self.approximate_gelu)
        return dense(x.shape[-1], self.dtype, "fc2")(h)


def timestep_frequencies(t: jax.Array, dim: int = 256, max_period: float = 10000.0) -> jax.Array:
    """[cos(t f_k), sin(t f_k)] (cos half first), f_k = exp(-ln(max_period) k / (dim/2)). t: (b,) -> (b, dim), float32."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t.astype(jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class TimestepEmbedder(nn.Module):
    """Sinusoidal embedding -> Linear(256->mid) -> SiLU -> Linear(mid->width), mid = round(sqrt(width*256)).

    Params `mlp_0`, `mlp_2` (PyTorch `mlp.0`, `mlp.2`). t: (b,) -> (b, width).
    """

    width: int
    freq_dim: int = 256
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, t: jax.Array) -> jax.Array:
        mid = round(math.sqrt(self.width * self.freq_dim))
        h = dense(mid, self.dtype, "mlp_0")(timestep_frequencies(t, self.freq_dim))
        return dense(self.width, self.dtype, "mlp_2")(nn.silu(h))
