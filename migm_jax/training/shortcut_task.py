"""The shortcut task of the trainer: a frozen base model (teacher) and its shortcut (student).

A task is what `loop.train` drives; every task offers the same methods:
  state_layout() -> (abstract TrainState, its shardings);  init_state(key) -> TrainState
  train_step(state, m) -> (state, metrics with 'loss')    micro-batch m (a pure function of m)
  compile_steps(state, micro_steps)                        the train steps compiled ahead, checked against memory
  validate(state) -> {'val/...': float};  preview(state, path) -> path or None;  export(state, dir) -> {name: path}
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from migm_jax.memory import TRAIN_HINT, check_fits
from migm_jax.training.config import TrainConfig
from migm_jax.training.export import export_shortcut
from migm_jax.training.preview import write_preview
from migm_jax.training.sources import make_source
from migm_jax.training.step import (fsdp_sharding, make_eval_step, make_init, make_train_step, rollout_steps,
                                    state_layout, step_config)


def build_family(cfg: TrainConfig):
    """-> (family adaptor, teacher params, initial shortcut params or None, base configs, base params)."""
    if cfg.family == "maskgit":
        from migm_jax.training.maskgit_family import build_maskgit
        return build_maskgit(cfg)
    from migm_jax.training.dimoo_family import build_dimoo
    return build_dimoo(cfg)


class ShortcutTask:
    def __init__(self, cfg: TrainConfig, mesh: Mesh):
        self.cfg, self.mesh = cfg, mesh
        self.family, teacher, self.init_params, self.base_configs, self.base_params = build_family(cfg)
        self.teacher = jax.device_put(teacher, fsdp_sharding(mesh, teacher))
        self.step_cfg = step_config(cfg)
        self.step_fns = {}
        self.said_no_decoder = False

    @functools.cached_property
    def source(self):
        return make_source(self.family, self.cfg, self.mesh, self.teacher, jax.random.PRNGKey(self.cfg.seed + 2))

    def state_layout(self):
        return state_layout(self.family, self.step_cfg, self.mesh)

    def init_state(self, key: jax.Array):
        return make_init(self.family, self.step_cfg, self.mesh)(self.init_params, key)

    def step_fn(self, k: int):
        """The jitted train step of rollout length k."""
        if k not in self.step_fns:
            self.step_fns[k] = make_train_step(self.family, self.step_cfg, self.mesh, k)
        return self.step_fns[k]

    def train_step(self, state, m: int):
        return self.step_fn(rollout_steps(m, self.cfg))(state, self.source.batch(m), self.teacher, jnp.int32(m))

    def compile_steps(self, state, micro: range) -> None:
        """Compiles the train step of every rollout length that micro-steps `micro` reach, before the first
        runs (the calls reuse them); ValueError (one line) for one that needs more memory than a device has."""
        cfg = self.cfg
        lengths = sorted({rollout_steps(m, cfg) for m in micro[:cfg.rollout_switch_interval * cfg.max_rollout_step]})
        batch = self.source.batch(micro.start)
        for k in lengths:
            compiled = self.step_fn(k).lower(state, batch, self.teacher, jnp.int32(micro.start)).compile()
            check_fits(compiled, f"the train step{f' of rollout {k}' if cfg.max_rollout_step > 1 else ''} at "
                       f"batch_size {cfg.batch_size}", TRAIN_HINT)

    def validate(self, state) -> dict:
        """Mean of the EMA model's one-step metrics over the validation batches, keys prefixed 'val/'."""
        eval_step = make_eval_step(self.family, self.step_cfg, self.mesh)
        rows = jax.device_get([eval_step(state.ema, raw, self.teacher) for raw in self.source.val_batches()])
        return {f"val/{k}": float(np.mean([r[k] for r in rows])) for k in rows[0]} if rows else {}

    def preview(self, state, path: str):
        """Teacher row, then the EMA shortcut at each preview budget (none without preview_budgets); None
        without a VQ decoder, which is said once."""
        cfg = self.cfg
        if not cfg.preview_budgets:
            return None
        path = write_preview(self.family, self.base_configs, self.base_params, self.teacher, state.ema,
                             cfg.preview_budgets, cfg.preview_images, cfg.seed + 4, path)
        if path is None and not self.said_no_decoder:
            print("no VQ decoder in the teacher weights: no sample grids")
            self.said_no_decoder = True
        return path

    def export(self, state, out_dir: str) -> dict:
        return export_shortcut(out_dir, self.family, self.base_configs, jax.device_get(self.base_params),
                               jax.device_get(state.ema), self.cfg.sampling, self.cfg.export_dtype, self.cfg.teacher_weights)
