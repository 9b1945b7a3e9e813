"""Pluggable sources of the random draws a sampler makes at each step.

A sampler asks its source for every random number of step `i` with the step's key; `JaxNoise`
draws them with `jax.random`, `RecordedNoise` replays arrays recorded elsewhere (e.g. from the
original PyTorch run) so that a port can be checked decision by decision. Both are pytrees and
pass through `jit`/`lax.scan` unchanged.

Keys are per image: the samplers turn their key into one key per batch row (`row_keys`) and pass
those (b, 2) keys on; every draw of row r comes from row r's key alone, so an image does not depend on
the batch size, on its position in the batch, or on the other images.
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


def step_keys(keys: jax.Array, step: jax.Array, n: int = 2) -> tuple[jax.Array, ...]:
    """`n` independent per-image keys for step `step`: row r gets split(fold_in(keys[r], step), n).
    keys (b, 2) -> n arrays (b, 2)."""
    split = jax.vmap(lambda k: jax.random.split(jax.random.fold_in(k, step), n), out_axes=1)(keys)
    return tuple(split[j] for j in range(n))


@flax.struct.dataclass
class JaxNoise:
    """Fresh draws from `jax.random` (the default); `key` holds one key per batch row, (b, 2)."""

    def categorical(self, key: jax.Array, step: jax.Array, logits: jax.Array) -> jax.Array:
        """Samples ids from softmax(logits) over the last axis. logits (b, ..., K) -> (b, ...) int32."""
        draw = jax.vmap(lambda k, x: jax.random.categorical(k, x, axis=-1))
        return draw(key, logits.astype(jnp.float32)).astype(jnp.int32)

    def gumbel(self, key: jax.Array, step: jax.Array, shape: Sequence[int]) -> jax.Array:
        """Standard Gumbel noise (b, ...) float32, row r from key[r]."""
        return jax.vmap(lambda k: jax.random.gumbel(k, tuple(shape[1:]), jnp.float32))(key)

    def uniform(self, key: jax.Array, step: jax.Array, shape: Sequence[int], slot: int = 0) -> jax.Array:
        """U[0, 1) noise (b, ...) float32, row r from key[r]; `slot` tells apart several uniform draws of one step."""
        return jax.vmap(lambda k: jax.random.uniform(k, tuple(shape[1:]), jnp.float32))(key)


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
