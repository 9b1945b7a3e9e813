"""LLaDA backbone of Lumina-DiMOO (`LLaDAModelLM` with `LLaDALlamaBlock`s), bidirectional.

ids -> wte -> n_layers x [x += attn_out(Attn(attn_norm(x))); x += ff_out(silu(ff_proj(h)) * up_proj(h)), h = ff_norm(x)]
-> ln_f -> feat -> ff_out (untied head) -> logits. RMSNorms have a weight and no bias; no linear has a bias.

Precision follows the original: RMSNorm statistics in float32, rounded back to the input dtype,
then multiplied by the weight with ordinary dtype promotion; RoPE rotation in float32, rounded back;
SiLU in float32, rounded back. With bfloat16 params and compute this reproduces the rounding points
of the bf16 PyTorch model; in float32 everything is float32.

Param tree (mirrors the HF keys `model.transformer.*`, so conversion is 1:1):
`transformer/wte/embedding` (vocab, d), `transformer/blocks_<i>/{attn_norm,ff_norm}/scale` (d,),
`transformer/blocks_<i>/{q_proj,k_proj,v_proj,attn_out,ff_proj,up_proj,ff_out}/kernel` (in, out),
`transformer/ln_f/scale` (d,), `transformer/ff_out/kernel` (d, vocab).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from migm_jax.models.fp8 import Fp8Dense
from migm_jax.models.layers import dot_product_attention

Dtype = Any

# ModelConfig defaults of the original for the fields read by `LLaDAConfig.from_hf_config`; a config.json
# that omits a field means this value.
_HF_DEFAULTS = {
    "d_model": 768, "n_heads": 12, "n_kv_heads": None, "n_layers": 12, "mlp_ratio": 4, "mlp_hidden_size": None,
    "activation_type": "swiglu", "block_type": "sequential", "block_group_size": 1, "alibi": False, "rope": False,
    "rope_full_precision": True, "multi_query_attention": None, "attention_layer_norm": False,
    "input_emb_norm": False, "layer_norm_type": "default", "layer_norm_with_affine": True, "rms_norm_eps": 1e-5,
    "max_sequence_length": 1024, "rope_theta": 10000.0, "include_qkv_bias": False, "include_bias": False,
    "bias_for_layer_norm": None, "scale_logits": False, "vocab_size": 50257, "embedding_size": 50304,
    "weight_tying": True,
}
# The architecture this port implements (the one Lumina-DiMOO / LLaDA-8B use).
_SUPPORTED = {
    "activation_type": "silu", "block_type": "llama", "block_group_size": 1, "alibi": False, "rope": True,
    "rope_full_precision": True, "attention_layer_norm": False, "input_emb_norm": False, "layer_norm_type": "rms",
    "layer_norm_with_affine": True, "include_qkv_bias": False, "include_bias": False, "bias_for_layer_norm": False,
    "scale_logits": False, "weight_tying": False,
}


@dataclasses.dataclass(frozen=True)
class LLaDAConfig:
    """Sizes of a LLaDA backbone. `embedding_size` = rows of wte and of the head (= logits width)."""

    d_model: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: int = 32
    mlp_hidden_size: int = 12288
    vocab_size: int = 134548
    embedding_size: int = 134548
    rope_theta: float = 500000.0
    rms_norm_eps: float = 1e-5
    max_sequence_length: int = 4096  # informational: RoPE is computed for any position

    def __post_init__(self):
        if min(self.n_heads, self.n_kv_heads) < 1 or self.d_model % self.n_heads or self.n_heads % self.n_kv_heads:
            raise ValueError(f"LLaDA config: d_model {self.d_model}, n_heads {self.n_heads}, n_kv_heads "
                             f"{self.n_kv_heads} do not divide; give n_heads dividing d_model and n_kv_heads "
                             "dividing n_heads")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @classmethod
    def dimoo_8b(cls) -> "LLaDAConfig":
        """Lumina-DiMOO 8B: 4096 x 32 layers, 32 heads (no GQA), MLP 12288, 134548 = 126356 text + 8192 image rows."""
        return cls()

    @classmethod
    def from_hf_config(cls, hf: dict) -> "LLaDAConfig":
        """From the HF `config.json` dict (model_type 'llada'); ValueError for an architecture this port lacks."""
        c = {**_HF_DEFAULTS, **hf}
        if c["bias_for_layer_norm"] is None:
            c["bias_for_layer_norm"] = c["include_bias"]
        c["include_qkv_bias"] = bool(c["include_qkv_bias"])
        bad = [f"{k}={c[k]!r} (need {v!r})" for k, v in _SUPPORTED.items() if c[k] != v]
        if bad:
            raise ValueError("unsupported LLaDA config: " + ", ".join(bad))
        n_kv = c["n_kv_heads"]
        if c["multi_query_attention"]:
            n_kv = 1
        elif n_kv is None:
            n_kv = c["n_heads"]
        return cls(
            d_model=c["d_model"], n_layers=c["n_layers"], n_heads=c["n_heads"], n_kv_heads=n_kv,
            mlp_hidden_size=c["mlp_hidden_size"] or c["mlp_ratio"] * c["d_model"],
            vocab_size=c["vocab_size"], embedding_size=c["embedding_size"] or c["vocab_size"],
            rope_theta=float(c["rope_theta"]), rms_norm_eps=float(c["rms_norm_eps"]),
            max_sequence_length=c["max_sequence_length"],
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LLaDAConfig":
        return cls(**d)


class RMSNorm(nn.Module):
    """`RMSLayerNorm`: y = x * rsqrt(mean(x^2) + eps) in float32, rounded to x.dtype, then scale * y.

    The product follows dtype promotion (bf16 scale -> bf16, fp32 scale -> fp32, as in PyTorch).
    x: (..., d) -> (..., d). Param `scale` (d,).
    """

    eps: float
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), self.param_dtype)
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return scale * y.astype(x.dtype)


def rope_inv_freq(head_dim: int, theta: float) -> jax.Array:
    """1 / theta^(2j/head_dim), j = 0..head_dim/2-1, float32 (head_dim/2,)."""
    return 1.0 / (jnp.float32(theta) ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))


def apply_rope(t: jax.Array, positions: jax.Array, theta: float) -> jax.Array:
    """Rotate-half RoPE: t' = t cos + [-t2, t1] sin with angles cat(p f, p f), in float32.

    t: (b, L, heads, head_dim); positions: (b, L) int. Returns t's shape and dtype.
    """
    angles = positions.astype(jnp.float32)[..., None] * rope_inv_freq(t.shape[-1], theta)
    angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]
    t32 = t.astype(jnp.float32)
    t1, t2 = jnp.split(t32, 2, axis=-1)
    rotated = jnp.concatenate([-t2, t1], axis=-1)
    return (t32 * jnp.cos(angles) + rotated * jnp.sin(angles)).astype(t.dtype)


def _linear(features: int, dtype: Dtype, param_dtype: Dtype, name: str) -> nn.Dense:
    return nn.Dense(features, use_bias=False, dtype=dtype, param_dtype=param_dtype, name=name)


class LLaDABlock(nn.Module):
    """`LLaDALlamaBlock`: x += attn_out(Attn(q, k, v)); x += ff_out(silu(ff_proj(h)) * up_proj(h)), h = ff_norm(x).

    __call__(x (b,Lq,d), positions (b,Lq) int, kv (b,Lk,d) | None, kv_positions (b,Lk) int | None,
    key_mask (b,Lk) bool | None, key_lengths (b,) int | None (at most one of the two)) -> (b,Lq,d).

    Self-attention when kv is None (keys at `positions`). Cross-attention otherwise: q from attn_norm(x),
    k and v from attn_norm(kv) with the SAME attn_norm, keys rotated at `kv_positions` (values never
    rotated). key_mask False = key ignored, and a row with no valid key gets a zero attention output
    (attention over an empty key set); key_lengths (>= 1) = only the first key_lengths keys count (right
    padding, no mask tensor on cuDNN). GQA: kv head j serves query heads j*g .. j*g+g-1 (repeat_interleave).
    Sows `attn_branch`, `mlp_branch`, `out` into 'intermediates'.
    matmul='fp8': the seven projections run as `Fp8Dense` on `quantize_llada` params (opt-in, inference).
    """

    n_heads: int
    n_kv_heads: int
    mlp_hidden: int
    rope_theta: float
    eps: float
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    attention_impl: Optional[str] = None
    matmul: Optional[str] = None  # None: in `dtype`; 'fp8': e4m3 with current scaling (models/fp8.py)

    @nn.compact
    def __call__(self, x: jax.Array, positions: jax.Array, kv: Optional[jax.Array] = None,
                 kv_positions: Optional[jax.Array] = None, key_mask: Optional[jax.Array] = None,
                 key_lengths: Optional[jax.Array] = None) -> jax.Array:
        if key_mask is not None and key_lengths is not None:
            raise ValueError("LLaDABlock takes key_mask or key_lengths, not both")
        b, lq, d = x.shape
        hd = d // self.n_heads
        if self.matmul == "fp8":
            linear = lambda f, name: Fp8Dense(f, self.dtype, name=name)
        else:
            linear = lambda f, name: _linear(f, self.dtype, self.param_dtype, name)
        attn_norm = RMSNorm(self.eps, self.param_dtype, name="attn_norm")
        h = attn_norm(x)
        if kv is None:
            hkv, kv_positions = h, positions
        else:
            hkv = attn_norm(kv)
        lk = hkv.shape[1]
        q = apply_rope(linear(d, "q_proj")(h).reshape(b, lq, self.n_heads, hd), positions, self.rope_theta)
        k = linear(self.n_kv_heads * hd, "k_proj")(hkv).reshape(b, lk, self.n_kv_heads, hd)
        k = apply_rope(k, kv_positions, self.rope_theta)
        v = linear(self.n_kv_heads * hd, "v_proj")(hkv).reshape(b, lk, self.n_kv_heads, hd)
        group = self.n_heads // self.n_kv_heads
        if group > 1 and self.attention_impl is None:  # jax.nn.dot_product_attention groups heads itself
            k, v = jnp.repeat(k, group, axis=2), jnp.repeat(v, group, axis=2)
        att = dot_product_attention(q, k, v, key_mask, self.attention_impl, key_lengths)
        if key_mask is not None:
            att = jnp.where(jnp.any(key_mask, axis=-1)[:, None, None, None], att, jnp.zeros((), att.dtype))
        att = linear(d, "attn_out")(att.reshape(b, lq, d))
        self.sow("intermediates", "attn_branch", att)
        x = x + att
        h = RMSNorm(self.eps, self.param_dtype, name="ff_norm")(x)
        gate = linear(self.mlp_hidden, "ff_proj")(h)
        up = linear(self.mlp_hidden, "up_proj")(h)
        mlp = linear(d, "ff_out")(jax.nn.silu(gate.astype(jnp.float32)).astype(gate.dtype) * up)
        self.sow("intermediates", "mlp_branch", mlp)
        x = x + mlp
        self.sow("intermediates", "out", x)
        return x


class LMHead(nn.Module):
    """Untied output head without bias. Param `kernel` (d, vocab) = PyTorch `ff_out.weight`.T."""

    d_model: int
    vocab: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        self.kernel = self.param("kernel", nn.initializers.lecun_normal(), (self.d_model, self.vocab), self.param_dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x (..., d) -> (..., vocab)."""
        return jnp.einsum("...d,dv->...v", x.astype(self.dtype), self.kernel.astype(self.dtype))

    def columns(self, x: jax.Array, start: int, stop: int) -> jax.Array:
        """Logit columns [start, stop) only: x (..., d) -> (..., stop-start)."""
        return jnp.einsum("...d,dv->...v", x.astype(self.dtype), self.kernel[:, start:stop].astype(self.dtype))


class LLaDATransformer(nn.Module):
    """The `transformer` ModuleDict of the original (wte, blocks, ln_f, ff_out); see `LLaDA`."""

    cfg: LLaDAConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    attention_impl: Optional[str] = None
    matmul: Optional[str] = None

    def setup(self):
        c = self.cfg
        self.wte = nn.Embed(c.embedding_size, c.d_model, param_dtype=self.param_dtype)
        self.blocks = [
            LLaDABlock(c.n_heads, c.n_kv_heads, c.mlp_hidden_size, c.rope_theta, c.rms_norm_eps,
                       self.dtype, self.param_dtype, self.attention_impl, self.matmul)
            for _ in range(c.n_layers)
        ]
        self.ln_f = RMSNorm(c.rms_norm_eps, self.param_dtype)
        self.ff_out = LMHead(c.d_model, c.embedding_size, self.dtype, self.param_dtype)

    def embed(self, ids: jax.Array) -> jax.Array:
        return jnp.take(self.wte.embedding, ids, axis=0).astype(self.dtype)

    def features(self, ids: jax.Array, positions: Optional[jax.Array], attn_mask: Optional[jax.Array],
                 key_lengths: Optional[jax.Array]) -> jax.Array:
        x = self.embed(ids)
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(ids.shape[1], dtype=jnp.int32), ids.shape)
        for block in self.blocks:
            x = block(x, positions, key_mask=attn_mask, key_lengths=key_lengths)
        self.sow("intermediates", "pre_final_norm", x)
        return self.ln_f(x).astype(self.dtype)

    def __call__(self, ids: jax.Array, positions: Optional[jax.Array], attn_mask: Optional[jax.Array],
                 key_lengths: Optional[jax.Array]) -> tuple[jax.Array, jax.Array]:
        feat = self.features(ids, positions, attn_mask, key_lengths)
        return self.ff_out(feat), feat

    def image_logits(self, feat: jax.Array, text_vocab_size: int, codebook_size: int) -> jax.Array:
        return self.ff_out.columns(feat, text_vocab_size, text_vocab_size + codebook_size)


class LLaDA(nn.Module):
    """apply({'params': p}, ids (b,L) int32, positions (b,L) int | None, attn_mask (b,L) bool | None,
    key_lengths (b,) int | None) -> (logits (b,L,embedding_size), feat (b,L,d_model)), both in `dtype`.

    feat = output of the final RMSNorm ln_f (the input of the head), the feature the shortcut evolves.
    Attention is bidirectional. positions default to 0..L-1 per row (RoPE). attn_mask: key padding
    mask, False = padding key ignored by every query; with right padding and default positions a
    padded batch equals separate unpadded runs at the valid positions (padded positions hold junk).
    key_lengths (b,) int: the same for right padding given as lengths (only the first key_lengths
    positions of a row are keys); on cuDNN this needs no mask tensor, so it is the fast form. Pass at
    most one of the two.
    The original never masks (it only runs batch 1), so attn_mask=None is the reference behaviour.

    dtype: compute dtype; param_dtype: dtype of freshly initialised params (the apply works with
    params of any float dtype, e.g. the bf16 8B checkpoint). attention_impl: None = exact XLA path
    with float32 softmax; 'cudnn' = flash attention on GPU. matmul: None = the block projections in
    `dtype`; 'fp8' = in float8 e4m3 with current scaling, on params from `fp8.quantize_llada` (opt-in).
    Other entry points (via `method=`): `embed`, `features`, `image_logits`.
    """

    cfg: LLaDAConfig
    dtype: Dtype = jnp.bfloat16
    attention_impl: Optional[str] = None
    param_dtype: Dtype = jnp.float32
    matmul: Optional[str] = None

    def setup(self):
        self.transformer = LLaDATransformer(self.cfg, self.dtype, self.param_dtype, self.attention_impl, self.matmul)

    def __call__(self, ids: jax.Array, positions: Optional[jax.Array] = None, attn_mask: Optional[jax.Array] = None,
                 key_lengths: Optional[jax.Array] = None) -> tuple[jax.Array, jax.Array]:
        return self.transformer(ids, positions, attn_mask, key_lengths)

    def features(self, ids: jax.Array, positions: Optional[jax.Array] = None, attn_mask: Optional[jax.Array] = None,
                 key_lengths: Optional[jax.Array] = None) -> jax.Array:
        """ids (b,L) -> post-ln_f feat (b,L,d) without computing the logits."""
        return self.transformer.features(ids, positions, attn_mask, key_lengths)

    def embed(self, ids: jax.Array) -> jax.Array:
        """wte rows: ids (...) int -> (..., d) in `dtype` (the shortcut's new-token input)."""
        return self.transformer.embed(ids)

    def image_logits(self, feat: jax.Array, text_vocab_size: int, codebook_size: int) -> jax.Array:
        """Codebook logits only: feat (..., d) -> (..., codebook_size) = head columns
        [text_vocab_size, text_vocab_size + codebook_size); equal to slicing the full logits."""
        return self.transformer.image_logits(feat, text_vocab_size, codebook_size)
