"""The hybrid sampling loop shared by every model and every mode.

One `lax.scan` over the N steps. At step i the carried feature is refreshed by one of the
`branches` selected by the static per-step kind (FULL = base model, CHEAP = shortcut, feature reuse
or a partial recompute), then `update` applies the model's selection rule and returns the new state.
Shapes are static, the kinds are data (one compiled program per configuration), and nothing
returns to the host before the loop ends.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

State = Any  # a pytree carrying at least what the branches and `update` read
Branch = Callable[[State, jax.Array], Any]  # (state, step) -> new feature
Update = Callable[[State, Any, jax.Array], tuple[State, Any]]  # (state, feature, step) -> (state, per-step output)


def hybrid_loop(state: State, kinds: np.ndarray, branches: Sequence[Branch], update: Update) -> tuple[State, Any]:
    """Runs len(kinds) steps; returns the final state and the stacked per-step outputs of `update`.

    kinds: (N,) int array of branch indices, known before tracing. When every step uses the same
    branch no conditional is emitted.
    """
    kinds = np.asarray(kinds, np.int32)
    used = sorted(set(kinds.tolist()))

    def body(state, xs):
        step, kind = xs
        if len(used) == 1:
            feat = branches[used[0]](state, step)
        else:
            feat = jax.lax.switch(kind, list(branches), state, step)
        return update(state, feat, step)

    return jax.lax.scan(body, state, (jnp.arange(len(kinds), dtype=jnp.int32), jnp.asarray(kinds)))
