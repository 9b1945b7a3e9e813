"""The one top-k selection rule every sampler uses (static shapes, ties to the lower position)."""

import jax
import jax.numpy as jnp


def select_top_k(code: jax.Array, mask: jax.Array, pred: jax.Array, conf: jax.Array, k: jax.Array):
    """Fixes the k most confident still-masked positions of every row.

    code, pred: (b, n) int32; mask: (b, n) bool (True = still masked); conf: (b, n) with -inf at
    decoded positions; k: scalar. Ties prefer the lower position. The selected set is used for the
    codes, the mask and the new-token map alike.
    Returns (code, mask, selected) with the same shapes.
    """
    order = jnp.argsort(-conf, axis=-1, stable=True)
    rank = jnp.argsort(order, axis=-1, stable=True)
    selected = (rank < k) & mask
    return jnp.where(selected, pred, code), mask & ~selected, selected
