"""Inception-v3 as in the TF 2015-12-05 graph that FID and IS are defined with, in Flax (NHWC).

This is the graph behind pytorch-fid's FID Inception and torch-fidelity's `inception-v3-compat`. It
differs from torchvision's Inception-v3 in four places: the average pools inside the A, C and first E
blocks leave the zero padding out of the mean; the last E block pools with a max instead; the classifier
has 1008 outputs; there is no auxiliary head. Every convolution is bias-free and followed by an inference
batch norm (eps 1e-3) and a ReLU.

Submodule names are the PyTorch module names, so the params tree mirrors the state dict key by key.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

BN_EPS = 1e-3
NUM_CLASSES = 1008
POOL_FEATURES = 2048
_PRECISION = jax.lax.Precision.HIGHEST  # full float32 products on every backend


class FrozenBatchNorm(nn.Module):
    """Batch norm with stored statistics: params scale, bias, mean, var (each (C,)); x (..., C) -> (..., C)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        mean = self.param("mean", nn.initializers.zeros, (c,))
        var = self.param("var", nn.initializers.ones, (c,))
        alpha = scale / jnp.sqrt(var + BN_EPS)
        return x * alpha + (bias - mean * alpha)


class ConvBN(nn.Module):
    """Bias-free convolution, frozen batch norm, ReLU: (b, H, W, C) -> (b, H', W', features)."""

    features: int
    kernel: tuple[int, int] = (1, 1)
    stride: int = 1
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Conv(self.features, self.kernel, self.stride, padding=[(p, p) for p in self.padding],
                    use_bias=False, precision=_PRECISION, name="conv")(x)
        return nn.relu(FrozenBatchNorm(name="bn")(x))


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
    """3x3 stride-1 mean over the in-image neighbours only (padding not counted)."""
    return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_s2(x: jax.Array) -> jax.Array:
    return nn.max_pool(x, (3, 3), (2, 2))


def _cat(*branches: jax.Array) -> jax.Array:
    return jnp.concatenate(branches, axis=-1)


class InceptionA(nn.Module):
    """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1 -> 224 + pool_features channels."""

    pool_features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b1 = ConvBN(64, name="branch1x1")(x)
        b5 = ConvBN(64, (5, 5), padding=(2, 2), name="branch5x5_2")(ConvBN(48, name="branch5x5_1")(x))
        b3 = ConvBN(64, name="branch3x3dbl_1")(x)
        b3 = ConvBN(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = ConvBN(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = ConvBN(self.pool_features, name="branch_pool")(_avg_pool_3x3(x))
        return _cat(b1, b5, b3, bp)


class InceptionB(nn.Module):
    """35x35 -> 17x17 reduction: 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2 -> 480 + C_in channels."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = ConvBN(384, (3, 3), stride=2, name="branch3x3")(x)
        bd = ConvBN(64, name="branch3x3dbl_1")(x)
        bd = ConvBN(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = ConvBN(96, (3, 3), stride=2, name="branch3x3dbl_3")(bd)
        return _cat(b3, bd, _max_pool_3x3_s2(x))


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (c7 inner channels) -> 768 channels."""

    c7: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        b1 = ConvBN(192, name="branch1x1")(x)
        b7 = ConvBN(self.c7, name="branch7x7_1")(x)
        b7 = ConvBN(self.c7, **row, name="branch7x7_2")(b7)
        b7 = ConvBN(192, **col, name="branch7x7_3")(b7)
        bd = ConvBN(self.c7, name="branch7x7dbl_1")(x)
        for i, (width, shape) in enumerate([(self.c7, col), (self.c7, row), (self.c7, col), (192, row)], start=2):
            bd = ConvBN(width, **shape, name=f"branch7x7dbl_{i}")(bd)
        bp = ConvBN(192, name="branch_pool")(_avg_pool_3x3(x))
        return _cat(b1, b7, bd, bp)


class InceptionD(nn.Module):
    """17x17 -> 8x8 reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2 -> 512 + C_in channels."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = ConvBN(320, (3, 3), stride=2, name="branch3x3_2")(ConvBN(192, name="branch3x3_1")(x))
        b7 = ConvBN(192, name="branch7x7x3_1")(x)
        b7 = ConvBN(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = ConvBN(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = ConvBN(192, (3, 3), stride=2, name="branch7x7x3_4")(b7)
        return _cat(b3, b7, _max_pool_3x3_s2(x))


class InceptionE(nn.Module):
    """8x8 block with split 1x3 / 3x1 outputs -> 2048 channels; `max_pool` picks the pool branch's pooling."""

    max_pool: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        def split(y, prefix):
            a = ConvBN(384, (1, 3), padding=(0, 1), name=f"{prefix}a")(y)
            return _cat(a, ConvBN(384, (3, 1), padding=(1, 0), name=f"{prefix}b")(y))

        b1 = ConvBN(320, name="branch1x1")(x)
        b3 = split(ConvBN(384, name="branch3x3_1")(x), "branch3x3_2")
        bd = ConvBN(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(ConvBN(448, name="branch3x3dbl_1")(x))
        bd = split(bd, "branch3x3dbl_3")
        pooled = nn.max_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1))) if self.max_pool else _avg_pool_3x3(x)
        bp = ConvBN(192, name="branch_pool")(pooled)
        return _cat(b1, b3, bd, bp)


class InceptionV3(nn.Module):
    """apply({'params': p}, x (b, 299, 299, 3) float32, already preprocessed) ->
    (pool (b, 2048), logits (b, 1008) = fc(pool) with its bias)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = ConvBN(32, (3, 3), stride=2, name="Conv2d_1a_3x3")(x)
        x = ConvBN(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = ConvBN(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = _max_pool_3x3_s2(x)
        x = ConvBN(80, name="Conv2d_3b_1x1")(x)
        x = ConvBN(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = _max_pool_3x3_s2(x)
        x = InceptionA(32, name="Mixed_5b")(x)
        x = InceptionA(64, name="Mixed_5c")(x)
        x = InceptionA(64, name="Mixed_5d")(x)
        x = InceptionB(name="Mixed_6a")(x)
        for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
            x = InceptionC(c7, name=name)(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = InceptionE(name="Mixed_7b")(x)
        x = InceptionE(max_pool=True, name="Mixed_7c")(x)
        pool = jnp.mean(x, axis=(1, 2))
        return pool, nn.Dense(NUM_CLASSES, precision=_PRECISION, name="fc")(pool)
