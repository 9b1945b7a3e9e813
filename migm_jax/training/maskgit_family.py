"""MaskGIT adaptor of the generic trainer: teacher MaskTransformer, student MaskGITShortcut.

Every family adaptor offers the same attributes and methods (the trainer uses nothing else):
  name, steps, mask_id, feature_shape (T, C), traj_fields
  init_shortcut(key) -> params
  shortcut_apply(sp, prev_feat, new_emb, new_map, mask_ratio, sample) -> (b,T,C)
  embed(tp, ids) -> (b,T,C) new-token embedding;  head(tp, feat) -> (b,Th,K) logits of the first Th positions
  loss_mask(cur_ids, sample) -> (b,T) bool;  teacher_features(tp, ids, sample) -> (b,T,C)
  rollout_tokens(tp, feat, cur_ids, step, key, sample) -> (cur_ids, new_map)   (student decides step `step`)
`sample` is the expanded batch (trajectories.expand): families read their extra fields from it.
  random_conditions(key, n);  capture(tp, conditions, key) -> trajectories (see trajectories.py)
  preview(base_configs, base_params, tp, sp, conditions, key, budget) -> (b,H,W,3) uint8 or None (no decoder)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from migm_jax.images import minmax_uint8
from migm_jax.models.maskgit import MaskTransformer, MaskTransformerConfig
from migm_jax.models.shortcut import MaskGITShortcut, MaskGITShortcutConfig
from migm_jax.models.vqgan import VQGAN, VQGANConfig
from migm_jax.sampling.maskgit import (MaskGITModels, MaskGITSampling, build_sampler, confidence, sample_maskgit,
                                      trajectory_sampling)
from migm_jax.sampling.selection import select_top_k
from migm_jax.sampling.schedules import maskgit_schedule
from migm_jax.training.config import ConfigError, TrainConfig
from migm_jax.weights import as_float32, load_weights


@dataclasses.dataclass(frozen=True)
class MaskGITFamily:
    transformer: MaskTransformerConfig
    shortcut: MaskGITShortcutConfig
    sampling: MaskGITSampling  # vanilla settings of the recorded trajectories
    compute_dtype: str = "bfloat16"
    teacher_dtype: str = "bfloat16"
    attention_impl: Optional[str] = None

    name = "maskgit"
    traj_fields = ("ids", "order")

    @property
    def steps(self) -> int:
        return self.sampling.steps

    @property
    def mask_id(self) -> int:
        return self.transformer.mask_id

    @property
    def feature_shape(self) -> tuple[int, int]:
        return self.transformer.seq_len, self.transformer.hidden

    def _teacher(self) -> MaskTransformer:
        return MaskTransformer(self.transformer, jnp.dtype(self.teacher_dtype), self.attention_impl)

    def _student(self) -> MaskGITShortcut:
        return MaskGITShortcut(self.shortcut, jnp.dtype(self.compute_dtype), self.attention_impl)

    def init_shortcut(self, key: jax.Array) -> dict:
        t, c = self.feature_shape
        feat = jnp.zeros((1, t, c), jnp.float32)
        return MaskGITShortcut(self.shortcut).init(key, feat, feat, jnp.ones((1, t), bool), jnp.ones((1,)))["params"]

    def shortcut_apply(self, sp, prev_feat, new_emb, new_map, mask_ratio, sample) -> jax.Array:
        return self._student().apply({"params": sp}, prev_feat, new_emb, new_map, mask_ratio)

    def embed(self, tp, ids: jax.Array) -> jax.Array:
        """Token + position embedding of `ids` at every position (what the sampler feeds the shortcut)."""
        return self._teacher().apply({"params": tp}, ids, method=MaskTransformer.embed)

    def head(self, tp, feat: jax.Array) -> jax.Array:
        return self._teacher().apply({"params": tp}, feat, method=MaskTransformer.head)

    def loss_mask(self, cur_ids: jax.Array, sample: dict) -> jax.Array:
        """Positions still masked in the target state (the class column never is)."""
        return cur_ids == self.mask_id

    def teacher_features(self, tp, ids: jax.Array, sample: Optional[dict] = None) -> jax.Array:
        """The teacher's last-layer feature of full id rows (b, T) (codes + class token)."""
        c = self.transformer
        n = c.grid * c.grid
        cls = ids[:, n]
        drop = cls == c.codebook_size + 1 + c.nclass
        labels = jnp.where(drop, 0, cls - c.codebook_size - 1)
        codes = ids[:, :n].reshape(-1, c.grid, c.grid)
        return self._teacher().apply({"params": tp}, codes, labels, drop, method=MaskTransformer.features)

    def rollout_tokens(self, tp, feat, cur_ids, step, key, sample):
        """The original's sample_from_feat: the student fixes the tokens of step `step` (b,) from its own feature.

        No CFG: head logits, categorical sample, confidence log p + r_temp * gumbel * (1 - step/(N-1)),
        the sche[step] most confident masked positions are fixed. Returns (cur_ids, new_map) (b, T).
        """
        c, n_steps = self.transformer, self.steps
        n = c.grid * c.grid
        logits = self.head(tp, feat)
        k_cat, k_conf = jax.random.split(key)
        pred = jax.random.categorical(k_cat, logits, axis=-1).astype(jnp.int32)
        p_pred = jnp.take_along_axis(jax.nn.softmax(logits, axis=-1), pred[..., None], axis=-1)[..., 0]
        ratio = step.astype(jnp.float32)[:, None] / (n_steps - 1)
        mask = cur_ids[:, :n] == self.mask_id
        conf = confidence(p_pred, self.sampling.randomize, self.sampling.r_temp, ratio, step[:, None],
                          lambda: jax.random.gumbel(k_conf, pred.shape, jnp.float32),
                          lambda: jax.random.uniform(k_conf, pred.shape, jnp.float32))
        conf = jnp.where(mask, conf, -jnp.inf)
        sche = jnp.asarray(maskgit_schedule(n_steps, self.sampling.sched_mode, c.grid), jnp.int32)
        k = sche[jnp.clip(step, 0, n_steps - 1)][:, None]
        code, _, selected = select_top_k(cur_ids[:, :n], mask, pred, conf, k)
        cur_ids = jnp.concatenate([code, cur_ids[:, n:]], axis=1)
        new_map = jnp.concatenate([selected, jnp.zeros_like(cur_ids[:, n:], bool)], axis=1)
        return cur_ids, new_map

    def random_conditions(self, key: jax.Array, n: int) -> jax.Array:
        """Uniform class ids, as makedata's random.randint(0, 999)."""
        return jax.random.randint(key, (n,), 0, self.transformer.nclass, jnp.int32)

    def preview(self, base_configs: dict, base_params: dict, tp, sp, labels: jax.Array, key: jax.Array,
                budget: Optional[int]) -> Optional[np.ndarray]:
        """Images (b,H,W,3) uint8 of `labels`: the teacher alone (budget None) or the shortcut `sp` at
        `budget`; None when the teacher has no VQGAN to decode with."""
        if "vqgan" not in base_configs:
            return None
        models = MaskGITModels(self.transformer, self.shortcut, VQGANConfig.from_dict(base_configs["vqgan"]),
                               self.teacher_dtype, self.attention_impl)
        sampling = self.sampling if budget is None else dataclasses.replace(self.sampling, mode="shortcut", budget=budget)
        params = {"transformer": tp, "shortcut": sp, "vqgan": base_params["vqgan"]}
        return minmax_uint8(np.asarray(build_sampler(models, sampling)(params, labels, key)["images"]))

    def capture(self, tp, labels: jax.Array, key: jax.Array) -> dict:
        """Runs the vanilla sampler on `labels` (b,) recording every step; returns 2b trajectories,
        interleaved [image 0 cond, image 0 uncond, image 1 cond, ...]."""
        c = self.transformer
        models = MaskGITModels(c, dtype=self.teacher_dtype, attention_impl=self.attention_impl)
        out = sample_maskgit(models, self.sampling, {"transformer": tp}, labels, key, capture=True, decode=False)
        trace, b = out["trace"], labels.shape[0]
        n_steps, t, hidden = self.steps, c.seq_len, c.hidden
        feat = trace["features"].reshape(n_steps, 2, b, t, hidden).transpose(2, 1, 0, 3, 4)
        order = jnp.sum(trace["mask"].astype(jnp.int32), axis=0)  # steps after which still masked = fixing step
        order = jnp.concatenate([order, jnp.full((b, 1), -1, jnp.int32)], axis=1)
        teacher = self._teacher()
        ids = jnp.stack([teacher.apply({"params": tp}, out["codes"], labels, jnp.full((b,), d), method=MaskTransformer.input_ids)
                         for d in (False, True)], axis=1)
        pair = lambda x: jnp.stack([x, x], axis=1).reshape((2 * b,) + x.shape[1:])
        return {
            "feat": feat.reshape(2 * b, n_steps, t, hidden).astype(jnp.bfloat16),
            "ids": ids.reshape(2 * b, t), "order": pair(order), "label": pair(labels.astype(jnp.int32)),
            "half": jnp.tile(jnp.arange(2, dtype=jnp.int32), b),
        }


@functools.lru_cache(maxsize=None)
def random_teacher(tcfg: MaskTransformerConfig):
    """jit(key) -> randomly initialised MaskTransformer params."""
    codes, labels = jnp.zeros((1, tcfg.grid, tcfg.grid), jnp.int32), jnp.zeros((1,), jnp.int32)
    return jax.jit(lambda key: MaskTransformer(tcfg).init(key, codes, labels, labels > 0)["params"])


@functools.lru_cache(maxsize=None)
def random_vqgan(vcfg: VQGANConfig, grid: int):
    """jit(key) -> randomly initialised VQGAN params (decoder for `grid` x `grid` codes)."""
    codes = jnp.zeros((1, grid, grid), jnp.int32)
    return jax.jit(lambda key: VQGAN(vcfg).init(key, codes, method=VQGAN.decode_code)["params"])


def build_maskgit(cfg: TrainConfig) -> tuple[MaskGITFamily, dict, Optional[dict], dict, dict]:
    """-> (family, teacher params, initial shortcut params or None, base configs, base params).

    Base configs/params: the teacher's weights-dir modules (transformer, vqgan, ...) minus any
    shortcut; export adds the trained shortcut to them.
    """
    vcfg = None
    if cfg.teacher_weights:
        family_name, configs, params = load_weights(cfg.teacher_weights)
        params = as_float32(params)  # weights may be stored in bfloat16
        if family_name != "maskgit":
            raise ConfigError(f"{cfg.teacher_weights} holds {family_name!r} weights, the config trains maskgit")
        configs = {k: v for k, v in configs.items() if k != "shortcut"}
        params = {k: v for k, v in params.items() if k != "shortcut"}
        tcfg = MaskTransformerConfig.from_dict(configs["transformer"])
    else:
        teacher = {k: v for k, v in cfg.teacher.items() if k != "vqgan"}
        try:
            tcfg = MaskTransformerConfig(**teacher)
            vcfg = VQGANConfig.from_dict(cfg.teacher["vqgan"]) if "vqgan" in cfg.teacher else None
        except (TypeError, KeyError, ValueError) as e:
            raise ConfigError(f"teacher: {e}") from None
        if vcfg is not None and vcfg.n_embed != tcfg.codebook_size:
            raise ConfigError(f"teacher.vqgan: n_embed {vcfg.n_embed} != the teacher's codebook_size "
                              f"{tcfg.codebook_size}; the decoder needs one embedding per code")
        configs = {"transformer": tcfg.to_dict(), **({"vqgan": vcfg.to_dict()} if vcfg is not None else {})}
        params = None  # random, once every setting is checked (below)
    try:
        scfg = MaskGITShortcutConfig(**{**cfg.shortcut, "hidden": tcfg.hidden})
        sampling = trajectory_sampling(cfg.sampling)
        sampling.validate(tcfg.grid)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"shortcut/sampling: {e}") from None
    if scfg.width % scfg.heads:
        raise ConfigError(f"shortcut width {scfg.width} is not divisible by heads={scfg.heads}")
    if params is None:
        params = {"transformer": random_teacher(tcfg)(jax.random.PRNGKey(cfg.seed + 1))}
        if vcfg is not None:  # a random decoder too, e.g. to exercise the sample grids
            params["vqgan"] = random_vqgan(vcfg, tcfg.grid)(jax.random.PRNGKey(cfg.seed + 3))
    init = None
    if cfg.init_shortcut:
        _, sconfigs, sparams = load_weights(cfg.init_shortcut)
        if "shortcut" not in sparams or MaskGITShortcutConfig.from_dict(sconfigs["shortcut"]) != scfg:
            raise ConfigError(f"{cfg.init_shortcut} holds no shortcut with config {scfg}")
        init = sparams["shortcut"]
    family = MaskGITFamily(tcfg, scfg, sampling, cfg.compute_dtype, cfg.teacher_dtype, cfg.attention_impl)
    return family, params["transformer"], init, configs, params
