"""What the base-model tasks share: train state, the jitted train and validation steps, image batches.

A subclass (constructed as Task(cfg, mesh, workdir); workdir None outside a run, e.g. in benchmarks)
defines
  init_params(key) -> params                         the model's random init
  loss(params, batch, key) -> (loss, (metrics, aux))
  eval_metrics(params, batch) -> metrics             deterministic, for validation
and may override after_update(state, aux, key) -> state (non-gradient updates), preview and export.
The state is the shortcut trainer's TrainState (params, EMA, AdamW state, step, key); micro-step m
draws from fold_in(state.key, m), so a resumed run repeats an uninterrupted one exactly.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from migm_jax.memory import TRAIN_HINT, check_fits
from migm_jax.pretrain.images import ImageSource
from migm_jax.sharding import replicated
from migm_jax.training.config import RESUME_MAY_CHANGE, TrainConfig
from migm_jax.training.state import apply_gradients, init_state, learning_rate, make_optimizer
from migm_jax.training.step import fsdp_sharding, step_config


_SHARED: dict = {}  # compiled programs of equal tasks (a resumed run, a second run in the same process)


def program_key(task, name: str) -> tuple:
    """Tasks of the same class, mesh and config up to the fields a resume may change compile the same programs."""
    defaults = TrainConfig()
    cfg = dataclasses.replace(task.cfg, **{f: getattr(defaults, f) for f in RESUME_MAY_CHANGE})
    return type(task), name, cfg, task.mesh


def shared(task, name: str, build):
    """build(), once per program_key(task, name)."""
    key = program_key(task, name)
    if key not in _SHARED:
        _SHARED[key] = build()
    return _SHARED[key]


class PretrainTask:
    def __init__(self, cfg: TrainConfig, mesh: Mesh, workdir: Optional[str] = None):
        self.cfg, self.mesh, self.workdir = cfg, mesh, workdir
        self.step_cfg = step_config(cfg)
        self.tx = make_optimizer(self.step_cfg)

    @functools.cached_property
    def source(self) -> ImageSource:
        return ImageSource(self.cfg, self.mesh)

    def _new_state(self, key: jax.Array):
        k_params, k_train = jax.random.split(key)
        return init_state(self.init_params(k_params), self.tx, k_train)

    def state_layout(self):
        def build():
            abstract = jax.eval_shape(self._new_state, jax.random.PRNGKey(0))
            return abstract, fsdp_sharding(self.mesh, abstract)

        return shared(self, "layout", build)

    def init_state(self, key: jax.Array):
        return shared(self, "init", lambda: jax.jit(self._new_state, out_shardings=self.state_layout()[1]))(key)

    def after_update(self, state, aux, key: jax.Array):
        return state

    @property
    def _train_step(self):
        return shared(self, "train_step", self._build_train_step)

    def _build_train_step(self):
        cfg = self.step_cfg

        def step(state, batch, m):
            key = jax.random.fold_in(state.key, m)
            grad_fn = jax.value_and_grad(lambda p: self.loss(p, batch, key), has_aux=True)
            (_, (metrics, aux)), grads = grad_fn(state.params)
            metrics["lr"] = jnp.asarray(learning_rate(cfg)(state.step), jnp.float32)
            state = apply_gradients(state, grads, self.tx, cfg.ema_decay)
            return self.after_update(state, aux, jax.random.fold_in(key, 1)), metrics

        return jax.jit(step, out_shardings=(self.state_layout()[1], replicated(self.mesh)), donate_argnums=0)

    def train_step(self, state, m: int):
        return self._train_step(state, self.source.batch(m), jnp.int32(m))

    def compile_steps(self, state, micro: range) -> None:
        """Compiles the train step before the first micro-step of `micro` runs (the calls reuse it); ValueError
        (one line) when it needs more memory than a device has."""
        compiled = self._train_step.lower(state, self.source.batch(micro.start), jnp.int32(micro.start)).compile()
        check_fits(compiled, f"the train step at batch_size {self.cfg.batch_size}", TRAIN_HINT)

    @property
    def _eval_step(self):
        return shared(self, "eval_step", lambda: jax.jit(self.eval_metrics, out_shardings=replicated(self.mesh)))

    def validate(self, state) -> dict:
        """The EMA model's metrics over the validation images: scalars averaged over the batches, keys
        prefixed 'val/'; vector metrics (e.g. code counts) summed and handed to `summarize`."""
        rows = jax.device_get([self._eval_step(state.ema, b) for b in self.source.val_batches()])
        if not rows:
            return {}
        out = {f"val/{k}": float(np.mean([r[k] for r in rows])) for k in rows[0] if np.ndim(rows[0][k]) == 0}
        sums = {k: np.sum([r[k] for r in rows], axis=0) for k in rows[0] if np.ndim(rows[0][k]) > 0}
        return {**out, **{f"val/{k}": v for k, v in self.summarize(sums).items()}}

    def summarize(self, sums: dict) -> dict:
        return {}

    def preview(self, state, path: str) -> Optional[str]:
        return None  # tasks without a picture to show

