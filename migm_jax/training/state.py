"""Train state (params, EMA, optimizer state, step, RNG) and the optimizer of the original recipe."""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import optax

from migm_jax.training.config import TrainConfig


@flax.struct.dataclass
class TrainState:
    """step: optimizer updates done (int32 scalar); params, ema: float32 shortcut params; opt_state:
    optax.MultiSteps state (holds the gradient accumulator); key: uint32[2] base PRNG key."""

    step: jax.Array
    params: dict
    ema: dict
    opt_state: optax.OptState
    key: jax.Array


def learning_rate(cfg: TrainConfig) -> optax.Schedule:
    """Constant lr; with step_decay x decay_gamma from update index decay_at on (PyTorch MultiStepLR
    stepped once per optimizer step: updates 0..decay_at-1 use lr); with warmup_steps > 0 update i
    < warmup_steps uses (i + 1) / warmup_steps of that."""
    def schedule(count):
        lr = jnp.where(count >= cfg.decay_at, cfg.lr * cfg.decay_gamma, cfg.lr) if cfg.step_decay else cfg.lr
        if cfg.warmup_steps:
            lr = lr * jnp.minimum(1.0, (count + 1) / cfg.warmup_steps)
        return lr

    if not cfg.step_decay and not cfg.warmup_steps:
        return optax.constant_schedule(cfg.lr)
    return schedule


def make_optimizer(cfg: TrainConfig) -> optax.MultiSteps:
    """AdamW as torch.optim.AdamW (decoupled decay on every param), averaged over accum_steps micro-batches."""
    adamw = optax.adamw(learning_rate(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay)
    return optax.MultiSteps(adamw, every_k_schedule=cfg.accum_steps)


def init_state(params: dict, tx: optax.MultiSteps, key: jax.Array) -> TrainState:
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, ema=jax.tree.map(jnp.copy, params),
                      opt_state=tx.init(params), key=key)


def apply_gradients(state: TrainState, grads: dict, tx: optax.MultiSteps, ema_decay: float) -> TrainState:
    """One micro-step. When it completes an update: params move, EMA = params on the first update
    (torch AveragedModel copies) and decay * EMA + (1 - decay) * params after, step += 1."""
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    updated = tx.has_updated(opt_state)
    first = state.step == 0
    ema = jax.tree.map(lambda e, p: jnp.where(updated, jnp.where(first, p, ema_decay * e + (1 - ema_decay) * p), e),
                       state.ema, params)
    return state.replace(step=state.step + updated.astype(jnp.int32), params=params, ema=ema, opt_state=opt_state)
