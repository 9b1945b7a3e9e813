"""Pluggable sources of the random draws a sampler makes at each step.

A sampler asks its source for every random number of step `i` with the step's key; `JaxNoise`
draws them with `jax.random`, `RecordedNoise` replays arrays recorded elsewhere (e.g. from the
original PyTorch run) so that a port can be checked decision by decision. Both are pytrees and
pass through `jit`/`lax.scan` unchanged.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class JaxNoise:
    """Fresh draws from `jax.random` (the default)."""

    def categorical(self, key: jax.Array, step: jax.Array, logits: jax.Array) -> jax.Array:
        """Samples ids from softmax(logits) over the last axis. logits (..., K) -> (...) int32."""
        return jax.random.categorical(key, logits.astype(jnp.float32), axis=-1).astype(jnp.int32)

    def gumbel(self, key: jax.Array, step: jax.Array, shape: Sequence[int]) -> jax.Array:
        """Standard Gumbel noise, float32."""
        return jax.random.gumbel(key, tuple(shape), jnp.float32)

    def uniform(self, key: jax.Array, step: jax.Array, shape: Sequence[int], slot: int = 0) -> jax.Array:
        """U[0, 1) noise, float32; `slot` tells apart several uniform draws of one step."""
        return jax.random.uniform(key, tuple(shape), jnp.float32)


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
