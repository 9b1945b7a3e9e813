"""diffusers `VQModel` (the aMUSEd VQ-GAN that Lumina-DiMOO uses as its image tokenizer), NHWC.

Only what DiMOO calls is ported: `decode(codes, force_not_quantize=True)` with
`lookup_from_codebook=True` (codebook lookup -> post_quant_conv -> decoder) and the tokenizer path
`quantize(encode(x).latents)` (encoder -> quant_conv -> nearest codebook vector). The decoder's
output space is [0, 1] (no 2x-1 / (x+1)/2 anywhere).

Param names mirror the diffusers state-dict keys with '.' -> '/' and list indices joined by '_',
e.g. `decoder.up_blocks.0.resnets.1.conv1.weight` -> `decoder/up_blocks_0/resnets_1/conv1/kernel`;
`quantize.embedding.weight` -> `quantize/embedding/embedding`.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

NORM_EPS = 1e-6  # every GroupNorm of the diffusers Encoder / Decoder
DOWN_BLOCK = "DownEncoderBlock2D"
UP_BLOCK = "UpDecoderBlock2D"


@dataclasses.dataclass(frozen=True)
class VQModelConfig:
    """The diffusers VQModel config fields that change the computation (others are ignored)."""

    block_out_channels: tuple[int, ...] = (128, 256, 256, 512, 768)
    layers_per_block: int = 2
    latent_channels: int = 64
    norm_num_groups: int = 32
    num_vq_embeddings: int = 8192
    vq_embed_dim: Optional[int] = None  # None = latent_channels (diffusers default)
    in_channels: int = 3
    out_channels: int = 3
    mid_block_add_attention: bool = False
    norm_type: str = "group"

    def __post_init__(self):
        object.__setattr__(self, "block_out_channels", tuple(self.block_out_channels))
        if self.norm_type != "group":
            raise ValueError(f"VQModel norm_type={self.norm_type!r} is not supported (only 'group'; "
                             "'spatial' is the MoVQ decoder, which DiMOO does not use)")

    @property
    def embed_dim(self) -> int:
        """Codebook vector size."""
        return self.latent_channels if self.vq_embed_dim is None else self.vq_embed_dim

    @property
    def scale_factor(self) -> int:
        """Pixels per latent cell along each side, 2^(len(block_out_channels)-1)."""
        return 2 ** (len(self.block_out_channels) - 1)

    @classmethod
    def amused_f16(cls) -> "VQModelConfig":
        """aMUSEd VQ-GAN (diffusers scripts/convert_amused.py), the expected Lumina-DiMOO tokenizer: f16, 8192 codes."""
        return cls(block_out_channels=(128, 256, 256, 512, 768), layers_per_block=2, latent_channels=64,
                   norm_num_groups=32, num_vq_embeddings=8192, mid_block_add_attention=False)

    @classmethod
    def from_diffusers_config(cls, d: dict) -> "VQModelConfig":
        """Builds the config from a diffusers `vqvae/config.json` dict; raises ValueError on variants not ported."""
        n = len(d["block_out_channels"])
        checks = {
            "_class_name": (d.get("_class_name", "VQModel"), "VQModel"),
            "act_fn": (d.get("act_fn", "silu"), "silu"),
            "down_block_types": (list(d.get("down_block_types", [DOWN_BLOCK] * n)), [DOWN_BLOCK] * n),
            "up_block_types": (list(d.get("up_block_types", [UP_BLOCK] * n)), [UP_BLOCK] * n),
        }
        for key, (got, want) in checks.items():
            if got != want:
                raise ValueError(f"VQModel config {key}={got!r} is not supported (expected {want!r})")
        return cls(block_out_channels=tuple(d["block_out_channels"]), layers_per_block=d.get("layers_per_block", 1),
                   latent_channels=d.get("latent_channels", 3), norm_num_groups=d.get("norm_num_groups", 32),
                   num_vq_embeddings=d.get("num_vq_embeddings", 256), vq_embed_dim=d.get("vq_embed_dim"),
                   in_channels=d.get("in_channels", 3), out_channels=d.get("out_channels", 3),
                   mid_block_add_attention=d.get("mid_block_add_attention", True),
                   norm_type=d.get("norm_type", "group"))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "VQModelConfig":
        return cls(**d)


def group_norm(groups: int, name: str) -> nn.GroupNorm:
    """torch GroupNorm(groups, eps=1e-6): float32 statistics (two-pass variance), float32 output."""
    return nn.GroupNorm(num_groups=groups, epsilon=NORM_EPS, dtype=jnp.float32, param_dtype=jnp.float32,
                        use_fast_variance=False, name=name)


def conv(features: int, kernel: int, dtype, name: str, stride: int = 1, padding="SAME") -> nn.Conv:
    """NHWC Conv2d with bias; `padding` 'SAME' = torch padding kernel//2 for the stride-1 odd kernels used here."""
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=padding, dtype=dtype,
                   param_dtype=jnp.float32, name=name)


class ResnetBlock(nn.Module):
    """diffusers ResnetBlock2D without time embedding: x' + conv2(silu(gn2(conv1(silu(gn1(x)))))),
    x' = conv_shortcut(x) (1x1) when the channel count changes. (b,H,W,Cin) -> (b,H,W,features)."""

    features: int
    groups: int
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.silu(group_norm(self.groups, "norm1")(x)).astype(self.dtype)
        h = conv(self.features, 3, self.dtype, "conv1")(h)
        h = nn.silu(group_norm(self.groups, "norm2")(h)).astype(self.dtype)
        h = conv(self.features, 3, self.dtype, "conv2")(h)
        if x.shape[-1] != self.features:
            x = conv(self.features, 1, self.dtype, "conv_shortcut")(x)
        return x + h


class MidBlock(nn.Module):
    """diffusers UNetMidBlock2D without attention: two ResnetBlocks at constant width."""

    groups: int
    add_attention: bool
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.add_attention:
            raise NotImplementedError("VQModel with mid_block_add_attention=True is not ported (the aMUSEd / DiMOO "
                                      "VQ-GAN has it off); its mid-block attention weights cannot be used")
        for i in range(2):
            x = ResnetBlock(x.shape[-1], self.groups, self.dtype, name=f"resnets_{i}")(x)
        return x


class Downsample(nn.Module):
    """diffusers Downsample2D(use_conv=True, padding=0): zero-pad one row at the bottom and one column at
    the right, then a 3x3 stride-2 VALID conv. (b,H,W,C) -> (b,H/2,W/2,C)."""

    features: int
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
        return conv(self.features, 3, self.dtype, "conv", stride=2, padding="VALID")(x)


class Upsample(nn.Module):
    """diffusers Upsample2D(use_conv=True): nearest x2 then a 3x3 conv. (b,H,W,C) -> (b,2H,2W,C)."""

    features: int
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return conv(self.features, 3, self.dtype, "conv")(x)


class Block(nn.Module):
    """DownEncoderBlock2D / UpDecoderBlock2D: `layers` ResnetBlocks, then an optional resampler."""

    features: int
    layers: int
    groups: int
    resample: Optional[str]  # 'down', 'up' or None
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i in range(self.layers):
            x = ResnetBlock(self.features, self.groups, self.dtype, name=f"resnets_{i}")(x)
        if self.resample == "down":
            x = Downsample(self.features, self.dtype, name="downsamplers_0")(x)
        elif self.resample == "up":
            x = Upsample(self.features, self.dtype, name="upsamplers_0")(x)
        return x


class Encoder(nn.Module):
    """diffusers Encoder (double_z=False): (b,H,W,in_channels) -> (b,H/f,W/f,latent_channels) float32."""

    cfg: VQModelConfig
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.cfg
        chans = c.block_out_channels
        x = conv(chans[0], 3, self.dtype, "conv_in")(x.astype(self.dtype))
        for i, ch in enumerate(chans):
            down = "down" if i < len(chans) - 1 else None
            x = Block(ch, c.layers_per_block, c.norm_num_groups, down, self.dtype, name=f"down_blocks_{i}")(x)
        x = MidBlock(c.norm_num_groups, c.mid_block_add_attention, self.dtype, name="mid_block")(x)
        x = nn.silu(group_norm(c.norm_num_groups, "conv_norm_out")(x)).astype(self.dtype)
        return conv(c.latent_channels, 3, self.dtype, "conv_out")(x).astype(jnp.float32)


class Decoder(nn.Module):
    """diffusers Decoder (norm_type 'group'): (b,h,w,latent_channels) -> (b,h*f,w*f,out_channels) float32."""

    cfg: VQModelConfig
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        c = self.cfg
        chans = c.block_out_channels[::-1]
        x = conv(chans[0], 3, self.dtype, "conv_in")(z.astype(self.dtype))
        x = MidBlock(c.norm_num_groups, c.mid_block_add_attention, self.dtype, name="mid_block")(x)
        for i, ch in enumerate(chans):
            up = "up" if i < len(chans) - 1 else None
            x = Block(ch, c.layers_per_block + 1, c.norm_num_groups, up, self.dtype, name=f"up_blocks_{i}")(x)
        x = nn.silu(group_norm(c.norm_num_groups, "conv_norm_out")(x)).astype(self.dtype)
        return conv(c.out_channels, 3, self.dtype, "conv_out")(x).astype(jnp.float32)


class VectorQuantizer(nn.Module):
    """diffusers VectorQuantizer: the codebook `embedding` (num_vq_embeddings, embed_dim), float32."""

    num_codes: int
    dim: int

    def setup(self):
        self.embedding = nn.Embed(self.num_codes, self.dim, param_dtype=jnp.float32, name="embedding")

    def lookup(self, codes: jax.Array) -> jax.Array:
        """(b,h,w) int -> codebook vectors (b,h,w,dim) float32."""
        return self.embedding(codes)

    def nearest(self, z: jax.Array) -> jax.Array:
        """(b,h,w,dim) -> (b,h,w) int32: argmin of the Euclidean distance to the codebook (first index on ties),
        via |z|^2 - 2 z.e + |e|^2 like torch.cdist's matmul path."""
        e = self.embedding.embedding
        z = z.astype(jnp.float32)
        ze = jnp.einsum("bhwc,kc->bhwk", z, e, precision=jax.lax.Precision.HIGHEST)
        d2 = jnp.sum(z * z, axis=-1, keepdims=True) - 2.0 * ze + jnp.sum(e * e, axis=-1)
        return jnp.argmin(d2, axis=-1).astype(jnp.int32)


class VQModel(nn.Module):
    """diffusers VQModel, NHWC. Images are float in [0, 1], (b,H,W,in_channels); codes are (b,H/f,W/f) int,
    f = cfg.scale_factor. `dtype` is the conv compute dtype; GroupNorm statistics, the codebook and all
    outputs are float32.

    `init(rng, images)` creates every parameter (it runs encode then decode_code).
    """

    cfg: VQModelConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        c = self.cfg
        self.encoder = Encoder(c, self.dtype)
        self.quant_conv = conv(c.embed_dim, 1, self.dtype, "quant_conv")
        self.quantize = VectorQuantizer(c.num_vq_embeddings, c.embed_dim)
        self.post_quant_conv = conv(c.latent_channels, 1, self.dtype, "post_quant_conv")
        self.decoder = Decoder(c, self.dtype)

    def encode_latents(self, images: jax.Array) -> jax.Array:
        """diffusers `encode(x).latents` = quant_conv(encoder(x)): (b,H,W,3) in [0,1] -> (b,h,w,embed_dim) float32."""
        h = self.encoder(images)
        return self.quant_conv(h.astype(self.dtype)).astype(jnp.float32)

    def encode(self, images: jax.Array) -> jax.Array:
        """Tokenizer: (b,H,W,3) in [0,1] -> codes (b,h,w) int32 (nearest codebook vector of each latent)."""
        return self.quantize.nearest(self.encode_latents(images))

    def decode_code(self, codes: jax.Array) -> jax.Array:
        """diffusers `decode(codes, force_not_quantize=True).sample` in NHWC, unclipped:
        codes (b,h,w) int -> images (b,h*f,w*f,out_channels) float32 (nominally [0, 1])."""
        quant = self.quantize.lookup(codes)
        return self.decoder(self.post_quant_conv(quant.astype(self.dtype)))

    def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(b,H,W,3) -> (codes (b,h,w) int32, reconstruction (b,H,W,3) float32)."""
        codes = self.encode(images)
        return codes, self.decode_code(codes)
