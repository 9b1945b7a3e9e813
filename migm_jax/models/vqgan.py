"""Taming VQGAN (`VQModel` with `VectorQuantizer2`, legacy loss) as used by MaskGIT, in NHWC.

Images are (b, H, W, 3) in [-1, 1]; latents and codebook vectors are (b, h, w, c) with h = H / f,
f = 2^(len(ch_mult) - 1). Params are float32 and named after the PyTorch state dict: a list index
joins its list with `_` and every other `.` is a nesting level (`decoder.up.4.block.0.norm1` ->
`decoder/up_4/block_0/norm1`, `quantize.embedding.weight` -> `quantize/embedding`). Convs and
activations run in the compute `dtype`; GroupNorm, attention softmax and the quantizer in float32.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from migm_jax.models.layers import Dtype, dot_product_attention

NORM_GROUPS = 32
NORM_EPS = 1e-6
BETA = 0.25  # commitment weight of VectorQuantizer2


@dataclasses.dataclass(frozen=True)
class VQGANConfig:
    """`model.params` of a taming `model.yaml`: embed_dim, n_embed and the `ddconfig` fields used at inference."""

    embed_dim: int
    n_embed: int
    z_channels: int
    ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    attn_resolutions: tuple[int, ...]
    resolution: int
    in_channels: int = 3
    out_ch: int = 3

    @classmethod
    def f16_1024(cls) -> "VQGANConfig":
        """The MaskGIT VQGAN (taming vqgan_imagenet_f16_1024), 72,141,699 params."""
        return cls(embed_dim=256, n_embed=1024, z_channels=256, ch=128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2,
                   attn_resolutions=(16,), resolution=256)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "VQGANConfig":
        return cls(**{**d, "ch_mult": tuple(d["ch_mult"]), "attn_resolutions": tuple(d["attn_resolutions"])})


def group_norm(name: str) -> nn.GroupNorm:
    """GroupNorm(32, eps 1e-6) computed and returned in float32 (params `scale`, `bias`)."""
    return nn.GroupNorm(num_groups=NORM_GROUPS, epsilon=NORM_EPS, use_fast_variance=False, dtype=jnp.float32,
                        param_dtype=jnp.float32, name=name)


def conv(features: int, kernel: int, dtype: Dtype, name: Optional[str] = None, stride: int = 1,
         padding="SAME") -> nn.Conv:
    """kernel x kernel NHWC conv with bias; "SAME" = PyTorch padding (kernel-1)/2 for odd kernels."""
    return nn.Conv(features, (kernel, kernel), strides=stride, padding=padding, dtype=dtype,
                   param_dtype=jnp.float32, name=name)


class ResnetBlock(nn.Module):
    """x (b,h,w,c_in) -> (b,h,w,out_ch): shortcut(x) + conv2(swish(norm2(conv1(swish(norm1(x)))))).

    shortcut = identity if c_in == out_ch else the 1x1 conv `nin_shortcut`.
    """

    out_ch: int
    dtype: Dtype

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.swish(group_norm("norm1")(x).astype(self.dtype))
        h = conv(self.out_ch, 3, self.dtype, "conv1")(h)
        h = nn.swish(group_norm("norm2")(h).astype(self.dtype))
        h = conv(self.out_ch, 3, self.dtype, "conv2")(h)
        if x.shape[-1] != self.out_ch:
            x = conv(self.out_ch, 1, self.dtype, "nin_shortcut")(x)
        return x + h


class AttnBlock(nn.Module):
    """x (b,h,w,c) -> x + proj_out(attn(q, k, v)), single head over all c channels and all h*w positions.

    q, k, v, proj_out are 1x1 convs of norm(x); weights softmax(q k^T c^-1/2) in float32.
    """

    dtype: Dtype

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, hgt, wid, c = x.shape
        h = group_norm("norm")(x).astype(self.dtype)
        heads = lambda t: t.reshape(b, hgt * wid, 1, c)  # one head of width c
        q, k, v = (heads(conv(c, 1, self.dtype, name)(h)) for name in ("q", "k", "v"))
        out = dot_product_attention(q, k, v).reshape(b, hgt, wid, c)
        return x + conv(c, 1, self.dtype, "proj_out")(out)


class Downsample(nn.Module):
    """(b,h,w,c) -> (b,h/2,w/2,c): zero-pad bottom and right by 1, then 3x3 stride-2 conv without padding."""

    dtype: Dtype

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
        return conv(x.shape[-1], 3, self.dtype, "conv", stride=2, padding="VALID")(x)


class Upsample(nn.Module):
    """(b,h,w,c) -> (b,2h,2w,c): nearest x2 (every pixel becomes a 2x2 block), then 3x3 conv."""

    dtype: Dtype

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return conv(x.shape[-1], 3, self.dtype, "conv")(x)


class Level(nn.Module):
    """One resolution level (`encoder.down.i` / `decoder.up.i`): `n_blocks` ResnetBlocks `block_j` to
    `out_ch`, each followed by an AttnBlock `attn_j` if `attn`, then `resample` ('down' -> `downsample`,
    'up' -> `upsample`, None -> nothing)."""

    out_ch: int
    n_blocks: int
    attn: bool
    resample: Optional[str]
    dtype: Dtype

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for j in range(self.n_blocks):
            x = ResnetBlock(self.out_ch, self.dtype, name=f"block_{j}")(x)
            if self.attn:
                x = AttnBlock(self.dtype, name=f"attn_{j}")(x)
        if self.resample == "down":
            x = Downsample(self.dtype, name="downsample")(x)
        elif self.resample == "up":
            x = Upsample(self.dtype, name="upsample")(x)
        return x


class Mid(nn.Module):
    """block_1 -> attn_1 -> block_2 at constant width."""

    dtype: Dtype

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        x = ResnetBlock(c, self.dtype, name="block_1")(x)
        x = AttnBlock(self.dtype, name="attn_1")(x)
        return ResnetBlock(c, self.dtype, name="block_2")(x)


class Encoder(nn.Module):
    """images (b,H,W,in_channels) -> z (b,H/f,W/f,z_channels) in `dtype`."""

    cfg: VQGANConfig
    dtype: Dtype

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg, res = self.cfg, self.cfg.resolution
        x = conv(cfg.ch, 3, self.dtype, "conv_in")(x.astype(self.dtype))
        for i, mult in enumerate(cfg.ch_mult):
            last = i == len(cfg.ch_mult) - 1
            x = Level(cfg.ch * mult, cfg.num_res_blocks, res in cfg.attn_resolutions, None if last else "down",
                      self.dtype, name=f"down_{i}")(x)
            res //= 2
        x = Mid(self.dtype, name="mid")(x)
        x = nn.swish(group_norm("norm_out")(x).astype(self.dtype))
        return conv(cfg.z_channels, 3, self.dtype, "conv_out")(x)


class Decoder(nn.Module):
    """z (b,h,w,z_channels) -> images (b,h*f,w*f,out_ch) in `dtype`; levels run from the last to level 0."""

    cfg: VQGANConfig
    dtype: Dtype

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        cfg = self.cfg
        res = cfg.resolution // cfg.downsample_factor
        x = conv(cfg.ch * cfg.ch_mult[-1], 3, self.dtype, "conv_in")(z)
        x = Mid(self.dtype, name="mid")(x)
        for i in reversed(range(len(cfg.ch_mult))):
            x = Level(cfg.ch * cfg.ch_mult[i], cfg.num_res_blocks + 1, res in cfg.attn_resolutions,
                      "up" if i else None, self.dtype, name=f"up_{i}")(x)
            res *= 2
        x = nn.swish(group_norm("norm_out")(x).astype(self.dtype))
        return conv(cfg.out_ch, 3, self.dtype, "conv_out")(x)


def quantizer_loss(z: jax.Array, z_q: jax.Array) -> jax.Array:
    """mean((sg(z_q) - z)^2) + 0.25 mean((z_q - sg(z))^2), float32 scalar: taming's VectorQuantizer2 loss with
    the legacy placement of beta, which is also diffusers' VectorQuantizer in a VQModel (legacy=True there).
    z: encoder outputs, z_q: their codebook vectors, both (..., e)."""
    sg = jax.lax.stop_gradient
    return jnp.mean((sg(z_q) - z) ** 2) + BETA * jnp.mean((z_q - sg(z)) ** 2)


def codebook_init(key: jax.Array, shape: tuple[int, int], dtype=jnp.float32) -> jax.Array:
    """U(-1/n_embed, 1/n_embed), taming's codebook init."""
    return jax.random.uniform(key, shape, dtype, -1.0 / shape[0], 1.0 / shape[0])


class VectorQuantizer(nn.Module):
    """Nearest-neighbour codebook `embedding` (n_embed, embed_dim), all in float32."""

    n_embed: int
    embed_dim: int

    def setup(self):
        self.embedding = self.param("embedding", codebook_init, (self.n_embed, self.embed_dim))

    def lookup(self, codes: jax.Array) -> jax.Array:
        """codes (...) int -> codebook vectors (..., embed_dim)."""
        return jnp.take(self.embedding, codes, axis=0)

    def __call__(self, z: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """z (b,h,w,e) -> (z_q (b,h,w,e) straight-through, loss scalar, codes (b,h,w) int32).

        code = argmin_n |z|^2 + |e_n|^2 - 2 z.e_n (first index on ties);
        loss = mean((sg(z_q) - z)^2) + 0.25 mean((z_q - sg(z))^2) (legacy placement of beta).
        """
        z = z.astype(jnp.float32)
        flat = z.reshape(-1, self.embed_dim)
        e = self.embedding
        dist = (jnp.sum(flat ** 2, axis=1, keepdims=True) + jnp.sum(e ** 2, axis=1)
                - 2 * jnp.dot(flat, e.T, precision=jax.lax.Precision.HIGHEST))
        codes = jnp.argmin(dist, axis=1).astype(jnp.int32).reshape(z.shape[:-1])
        z_q = self.lookup(codes)
        return z + jax.lax.stop_gradient(z_q - z), quantizer_loss(z, z_q), codes


class VQGAN(nn.Module):
    """Taming VQModel. `init(key, images)` creates every param (encoder, quant_conv, quantize, post_quant_conv,
    decoder); use `apply(..., method=VQGAN.decode_code | VQGAN.encode | VQGAN.encode_quantized)`. Outputs are float32."""

    cfg: VQGANConfig
    dtype: Dtype = jnp.float32

    def setup(self):
        cfg, dtype = self.cfg, self.dtype
        self.encoder = Encoder(cfg, dtype)
        self.quant_conv = conv(cfg.embed_dim, 1, dtype)
        self.quantize = VectorQuantizer(cfg.n_embed, cfg.embed_dim)
        self.post_quant_conv = conv(cfg.z_channels, 1, dtype)
        self.decoder = Decoder(cfg, dtype)

    def encode(self, images: jax.Array) -> jax.Array:
        """Tokenizer: images (b,H,W,in_channels) in [-1,1] -> codes (b,h,w) int32."""
        return self.encode_quantized(images)[0]

    def encode_quantized(self, images: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """The original's `encode`: images -> (codes (b,h,w) int32, quant (b,h,w,embed_dim) with the
        straight-through gradient, emb_loss scalar) for training a VQGAN."""
        z_q, loss, codes = self.quantize(self.quant_conv(self.encoder(images)))
        return codes, z_q, loss

    def decode_code(self, codes: jax.Array) -> jax.Array:
        """codes (b,h,w) int -> images (b,h*f,w*f,out_ch) float32, nominally in [-1,1], not clamped."""
        quant = self.quantize.lookup(codes).astype(self.dtype)
        return self.decoder(self.post_quant_conv(quant)).astype(jnp.float32)

    def __call__(self, images: jax.Array) -> jax.Array:
        """Reconstruction decode_code(encode(images)): (b,H,W,in_channels) -> (b,H,W,out_ch)."""
        return self.decode_code(self.encode(images))
