"""The jitted train and validation steps, and how state, teacher and batches are laid out on a mesh.

Batches are split over the mesh's ('data', 'fsdp') axes. With mesh fsdp > 1 every parameter array
(shortcut params, EMA, Adam moments, teacher) is split over 'fsdp' along its largest divisible axis
(ZeRO-3 style); XLA inserts the gathers. The same code runs on 1 CPU, 8 fake CPU devices, GPUs, TPUs.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from migm_jax.sharding import replicated
from migm_jax.training.config import TrainConfig
from migm_jax.training.losses import feature_metrics, kl, mse
from migm_jax.training.state import TrainState, apply_gradients, init_state, learning_rate, make_optimizer
from migm_jax.training.trajectories import expand, image_mask_ratio


def fsdp_sharding(mesh: Mesh, tree: Any) -> Any:
    """NamedSharding per leaf (arrays or ShapeDtypeStructs): the largest axis divisible by the fsdp size
    is split over 'fsdp', everything else (and every leaf when fsdp == 1) is replicated."""
    n = mesh.shape["fsdp"]

    def spec(leaf):
        shape = np.shape(leaf)
        dims = [d for d in np.argsort(shape, kind="stable")[::-1] if shape[d] % n == 0 and shape[d] >= n]
        if n == 1 or not dims:
            return NamedSharding(mesh, P())
        parts = [None] * len(shape)
        parts[dims[0]] = "fsdp"
        return NamedSharding(mesh, P(*parts))

    return jax.tree.map(spec, tree)


def rollout_steps(micro_step: int, cfg: TrainConfig) -> int:
    """Rollout length k of a micro-step: (iter // switch_interval) % max_rollout_step + 1 (original)."""
    return (micro_step // cfg.rollout_switch_interval) % cfg.max_rollout_step + 1


def forward(family, cfg: TrainConfig, sp: dict, tp: dict, sample: dict, key: jax.Array, k: int):
    """Rolls the student k steps from the sample (clipped per sample to N-1-s) -> (est, tgt, loss mask).

    Step 1 uses the recorded new tokens; step j >= 2 lets the student fix the tokens of step s+j-1
    from its own feature, and the target becomes the teacher's feature of the rolled-out tokens.
    Every step's input feature is a stop_gradient, so only the last step of each sample gets gradients.
    """
    step, order = sample["step"], sample["order"]
    k_i = jnp.minimum(k, family.steps - 1 - step)
    feat, cur, new_map, ratio = sample["prev_feat"], sample["cur_ids"], sample["new_map"], sample["mask_ratio"]
    for j in range(1, k + 1):
        active = j <= k_i
        if j >= 2:
            nxt, nxt_map = family.rollout_tokens(tp, jax.lax.stop_gradient(feat), cur, step + j - 1,
                                                 jax.random.fold_in(key, j), sample)
            cur = jnp.where(active[:, None], nxt, cur)
            new_map = jnp.where(active[:, None], nxt_map, new_map)
            ratio = image_mask_ratio(cur, order, family.mask_id)
        out = family.shortcut_apply(sp, jax.lax.stop_gradient(feat), family.embed(tp, cur), new_map, ratio, sample)
        feat = out if j == 1 else jnp.where(active[:, None, None], out, feat)
    tgt = sample["tgt_feat"].astype(jnp.float32)
    if k > 1:
        teacher = jax.lax.stop_gradient(family.teacher_features(tp, cur, sample).astype(jnp.float32))
        tgt = jnp.where((k_i >= 2)[:, None, None], teacher, tgt)
    return feat.astype(jnp.float32), tgt, family.loss_mask(cur, sample)


def loss_and_metrics(family, cfg: TrainConfig, sp, tp, raw: dict, key, k: int):
    """mean_b(mse_weight * MSE + kl_weight * T^2 * KL) over each sample's loss positions, and the metrics."""
    sample = expand(raw, family.mask_id)
    est, tgt, mask = forward(family, cfg, sp, tp, sample, key, k)
    per_sample = cfg.mse_weight * mse(est, tgt, mask)
    logits = None
    if cfg.kl_weight > 0 or cfg.log_kl:
        l_est = family.head(tp, est)
        l_tgt, l_prev = (jax.lax.stop_gradient(family.head(tp, f)) for f in (tgt, sample["prev_feat"]))
        logits = (l_prev, jax.lax.stop_gradient(l_est), l_tgt)
        if cfg.kl_weight > 0:
            hm = mask[:, : l_tgt.shape[1]]
            per_sample = per_sample + cfg.kl_weight * cfg.temperature ** 2 * kl(l_est, l_tgt, hm, cfg.temperature)
    loss = jnp.mean(per_sample)
    metrics = feature_metrics(sample["prev_feat"], jax.lax.stop_gradient(est), tgt, mask, logits, cfg.temperature)
    return loss, dict(metrics, loss=loss)


STEP_FIELDS = ("mse_weight", "kl_weight", "temperature", "log_kl", "ema_decay", "lr", "weight_decay", "b1", "b2", "eps",
               "step_decay", "decay_at", "decay_gamma", "accum_steps", "warmup_steps")


def step_config(cfg: TrainConfig) -> TrainConfig:
    """`cfg` with every field the compiled steps do not read reset to its default (one compilation
    serves runs that differ only in length, data, logging, ...)."""
    return TrainConfig(**{name: getattr(cfg, name) for name in STEP_FIELDS})


def new_state(family, cfg: TrainConfig, params: Optional[dict], key: jax.Array) -> TrainState:
    """Initial state from `params` (None: the shortcut's own random init) and a key."""
    k_params, k_train = jax.random.split(key)
    return init_state(family.init_shortcut(k_params) if params is None else params, make_optimizer(cfg), k_train)


@functools.lru_cache(maxsize=None)
def state_layout(family, cfg: TrainConfig, mesh: Mesh) -> tuple[Any, Any]:
    """(abstract TrainState, its shardings) for the family's shortcut."""
    abstract = jax.eval_shape(functools.partial(new_state, family, cfg, None), jax.random.PRNGKey(0))
    return abstract, fsdp_sharding(mesh, abstract)


@functools.lru_cache(maxsize=None)
def make_init(family, cfg: TrainConfig, mesh: Mesh) -> Callable:
    """jit(params or None, key) -> TrainState laid out on `mesh`."""
    return jax.jit(functools.partial(new_state, family, cfg), out_shardings=state_layout(family, cfg, mesh)[1])


@functools.lru_cache(maxsize=None)
def make_train_step(family, cfg: TrainConfig, mesh: Mesh, k: int) -> Callable:
    """jit(state, raw batch, teacher params, micro_step) -> (state, metrics); the state is donated.
    Teacher and batch keep the layout they were placed with."""
    tx = make_optimizer(cfg)

    def train_step(state: TrainState, raw: dict, tp: dict, micro_step: jax.Array):
        key = jax.random.fold_in(state.key, micro_step)
        grad_fn = jax.value_and_grad(lambda sp: loss_and_metrics(family, cfg, sp, tp, raw, key, k), has_aux=True)
        (_, metrics), grads = grad_fn(state.params)
        metrics["lr"] = jnp.asarray(learning_rate(cfg)(state.step), jnp.float32)
        return apply_gradients(state, grads, tx, cfg.ema_decay), metrics

    return jax.jit(train_step, out_shardings=(state_layout(family, cfg, mesh)[1], replicated(mesh)), donate_argnums=0)


@functools.lru_cache(maxsize=None)
def make_eval_step(family, cfg: TrainConfig, mesh: Mesh) -> Callable:
    """jit(EMA params, raw batch, teacher params) -> metrics (one-step prediction, as the README's validation)."""

    def eval_step(sp, raw, tp):
        return loss_and_metrics(family, cfg, sp, tp, raw, jax.random.PRNGKey(0), 1)[1]

    return jax.jit(eval_step, out_shardings=replicated(mesh))
