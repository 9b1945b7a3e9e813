"""Pluggable sources of the random draws a sampler makes at each step.

A sampler asks its source for every random number of step `i` with the step's key; `JaxNoise`
draws them with `jax.random`, `RecordedNoise` replays arrays recorded elsewhere (e.g. from the
original PyTorch run) so that a port can be checked decision by decision. Both are pytrees and
pass through `jit`/`lax.scan` unchanged.

Keys are per image: the samplers turn their key into one key per batch row (`row_keys`), and every
draw of row r comes from row r's key alone, so an image does not depend on the batch size, on its
position in the batch, or on the other images (a single key also works, drawing for the whole batch).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.struct
import jax
import jax.numpy as jnp


def _is_row_keys(key: jax.Array) -> bool:
    """True for a batch of keys: raw (b, 2) uint32 or typed (b,)."""
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    return key.ndim == (1 if typed else 2)


def image_keys(key: jax.Array, first: int, count: int) -> jax.Array:
    """Keys of images first .. first+count-1 of a run: fold_in(key, index). (count, 2) for a raw key."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(first, first + count, dtype=jnp.uint32))


def row_keys(key: jax.Array, batch: int) -> jax.Array:
    """One key per image: `key` as it is if it already holds `batch` keys, else image_keys(key, 0, batch)."""
    key = jnp.asarray(key)
    if _is_row_keys(key):
        if key.shape[0] != batch:
            raise ValueError(f"got {key.shape[0]} per-image keys for a batch of {batch}")
        return key
    return image_keys(key, 0, batch)


def step_keys(key: jax.Array, step: jax.Array, n: int = 2) -> tuple[jax.Array, ...]:
    """`n` independent keys for step `step`: split(fold_in(key, step), n), row by row for per-image keys."""
    def split(k):
        return jax.random.split(jax.random.fold_in(k, step), n)

    keys = jax.vmap(split, out_axes=1)(key) if _is_row_keys(key) else split(key)
    return tuple(keys[j] for j in range(n))


def _draw(key: jax.Array, shape: Sequence[int], draw) -> jax.Array:
    """draw(key, shape), or per row with row r's key for per-image keys (shape[0] rows)."""
    if _is_row_keys(key):
        return jax.vmap(lambda k: draw(k, tuple(shape[1:])))(key)
    return draw(key, tuple(shape))


@flax.struct.dataclass
class JaxNoise:
    """Fresh draws from `jax.random` (the default); `key` is one key or one key per batch row."""

    def categorical(self, key: jax.Array, step: jax.Array, logits: jax.Array) -> jax.Array:
        """Samples ids from softmax(logits) over the last axis. logits (b, ..., K) -> (b, ...) int32."""
        logits = logits.astype(jnp.float32)
        if _is_row_keys(key):
            return jax.vmap(lambda k, x: jax.random.categorical(k, x, axis=-1))(key, logits).astype(jnp.int32)
        return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)

    def gumbel(self, key: jax.Array, step: jax.Array, shape: Sequence[int]) -> jax.Array:
        """Standard Gumbel noise, float32."""
        return _draw(key, shape, lambda k, s: jax.random.gumbel(k, s, jnp.float32))

    def uniform(self, key: jax.Array, step: jax.Array, shape: Sequence[int], slot: int = 0) -> jax.Array:
        """U[0, 1) noise, float32; `slot` tells apart several uniform draws of one step."""
        return _draw(key, shape, lambda k, s: jax.random.uniform(k, s, jnp.float32))


@flax.struct.dataclass
class RecordedNoise:
    """Replays recorded draws: `draws[name][step]`.

    Names: 'categorical' (N, ...) ids, 'gumbel' (N, ...), 'uniform<slot>' (N, ...). A draw that was not
    recorded raises KeyError at trace time.
    """

    draws: dict[str, Any]

    def categorical(self, key, step, logits):
        return self.draws["categorical"][step].astype(jnp.int32)

    def gumbel(self, key, step, shape):
        return self.draws["gumbel"][step].astype(jnp.float32).reshape(shape)

    def uniform(self, key, step, shape, slot=0):
        return self.draws[f"uniform{slot}"][step].astype(jnp.float32).reshape(shape)
