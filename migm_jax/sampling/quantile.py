"""Per-row quantile of the valid entries, as torch.quantile computes it (ML-Cache selection, training metrics)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def masked_quantile(x: jax.Array, valid: jax.Array, q: float) -> jax.Array:
    """torch.quantile(x[valid], q, interpolation='linear') per row, float32: x, valid (b, L) -> (b,).

    Same rounding as torch's lerp (interpolates from the nearer end), so a threshold compared with `<=`
    selects the same entries as the original. A row without valid entries gives NaN.
    """
    x = x.astype(jnp.float32)
    n = jnp.sum(valid, axis=-1)
    srt = jnp.sort(jnp.where(valid, x, jnp.inf), axis=-1)
    rank = jnp.float32(q) * (n - 1).astype(jnp.float32)
    lo, hi = rank.astype(jnp.int32), jnp.ceil(rank).astype(jnp.int32)
    below = jnp.take_along_axis(srt, lo[:, None], axis=-1)[:, 0]
    above = jnp.take_along_axis(srt, hi[:, None], axis=-1)[:, 0]
    w = rank - lo.astype(jnp.float32)
    return jnp.where(w < 0.5, below + w * (above - below), above - (above - below) * (1 - w))
