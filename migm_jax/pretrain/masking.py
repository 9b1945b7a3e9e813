"""Masked-token objectives of the base models (MaskGIT transformer, DiMOO text-to-image): which image
cells are masked, and the cross-entropy over the codebook at the masked cells."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def arccos_mask(key: jax.Array, shape: tuple[int, int]) -> jax.Array:
    """(b, n) bool: per image a ratio arccos(r)/(pi/2), r ~ U(0,1), each position masked with that
    probability (MaskGIT's training schedule)."""
    k_r, k_m = jax.random.split(key)
    ratio = jnp.arccos(jax.random.uniform(k_r, (shape[0], 1))) / (jnp.pi / 2)
    return jax.random.uniform(k_m, shape) < ratio


def cosine_mask(key: jax.Array, shape: tuple[int, int]) -> jax.Array:
    """(b, n) bool: per image exactly max(1, ceil(n cos(pi/2 t))) cells masked, t ~ U(0,1), at random
    cells: the masked fractions the DiMOO sampler's cosine schedule passes through (`dimoo_keep_n`)."""
    b, n = shape
    k_t, k_c = jax.random.split(key)
    count = jnp.maximum(jnp.ceil(n * jnp.cos(jnp.pi / 2 * jax.random.uniform(k_t, (b, 1)))), 1)
    rank = jnp.argsort(jnp.argsort(jax.random.uniform(k_c, shape), axis=-1), axis=-1)
    return rank < count


def masked_cross_entropy(logits: jax.Array, target: jax.Array, mask: jax.Array, label_smoothing: float = 0.0
                         ) -> tuple[jax.Array, jax.Array]:
    """(loss, accuracy) over the masked cells of the batch: logits (b, n, K) float32, target (b, n) int,
    mask (b, n) bool. Loss: cross-entropy with label smoothing, averaged over all masked cells."""
    smoothed = optax.smooth_labels(jax.nn.one_hot(target, logits.shape[-1]), label_smoothing)
    ce = optax.softmax_cross_entropy(logits, smoothed)
    weight = mask.astype(jnp.float32)
    total = jnp.maximum(jnp.sum(weight), 1.0)
    return jnp.sum(ce * weight) / total, jnp.sum((jnp.argmax(logits, -1) == target) * weight) / total
