"""Lumina-DiMOO adaptor of the generic trainer: teacher LLaDA, student DiMOOShortcut (interface: maskgit_family.py).

Trajectory rows are whole (right-padded) sequences of one CFG side: ids (T,) with the prompt, the
image region and padding; order (T,) = fixing step of the image cells, -1 elsewhere; valid (T,) bool
(False = padding); always_new (T,) bool = the cond prompt positions (new tokens at every step, as the
original's get_samples; all False for uncond rows and with no_prompt).
Loss and KL cover every valid position (the original's MSE over the whole sequence), KL on the
codebook columns of the head.

Capture (makedata / online trajectories) needs the sampler to record its per-step features
(sample_dimoo has no capture flag yet) and a prompt source; until then DiMOO trains from datasets
written elsewhere in this format and `capture` raises.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import jax
import jax.numpy as jnp

from migm_jax.models.dimoo_shortcut import DiMOOShortcut, DiMOOShortcutConfig
from migm_jax.models.llada import LLaDA, LLaDAConfig
from migm_jax.sampling.dimoo import DiMOOSampling, gumbel_max_sample, remask_confidence
from migm_jax.sampling.dimoo_prompts import TokenLayout
from migm_jax.sampling.maskgit import select_top_k
from migm_jax.sampling.schedules import dimoo_keep_n
from migm_jax.training.config import ConfigError, TrainConfig
from migm_jax.weights import load_weights


@dataclasses.dataclass(frozen=True)
class DiMOOFamily:
    llada: LLaDAConfig
    layout: TokenLayout
    shortcut: DiMOOShortcutConfig
    sampling: DiMOOSampling  # vanilla settings of the recorded trajectories (steps, cfg, temperature)
    grid: tuple[int, int] = (64, 64)  # image tokens (rows, columns)
    seq_len: int = 4224  # padded sequence length T of the trajectories
    compute_dtype: str = "bfloat16"
    teacher_dtype: str = "bfloat16"
    attention_impl: Optional[str] = None

    name = "dimoo"
    traj_fields = ("ids", "order", "valid", "always_new")

    @property
    def steps(self) -> int:
        return self.sampling.steps

    @property
    def mask_id(self) -> int:
        return self.layout.mask

    @property
    def feature_shape(self) -> tuple[int, int]:
        return self.seq_len, self.llada.d_model

    def _teacher(self) -> LLaDA:
        return LLaDA(self.llada, jnp.dtype(self.teacher_dtype), self.attention_impl)

    def init_shortcut(self, key: jax.Array) -> dict:
        t, d = 8, self.llada.d_model
        feat = jnp.zeros((1, t, d), jnp.float32)
        return DiMOOShortcut(self.shortcut).init(key, feat, feat, jnp.ones((1, t), bool), jnp.ones((1,)))["params"]

    def shortcut_apply(self, sp, prev_feat, new_emb, new_map, mask_ratio, sample) -> jax.Array:
        sc = DiMOOShortcut(self.shortcut, jnp.dtype(self.compute_dtype), self.attention_impl)
        return sc.apply({"params": sp}, prev_feat, new_emb, new_map, mask_ratio, sample["valid"])

    def embed(self, tp, ids: jax.Array) -> jax.Array:
        """wte rows of `ids` (the original's frozen token_emb copy)."""
        return self._teacher().apply({"params": tp}, ids, method=LLaDA.embed)

    def head(self, tp, feat: jax.Array) -> jax.Array:
        """Codebook logits at every position: (b, T, d) -> (b, T, codebook) float32."""
        lay = self.layout
        logits = self._teacher().apply({"params": tp}, feat.astype(jnp.dtype(self.teacher_dtype)), lay.text_vocab_size,
                                       lay.codebook_size, method=LLaDA.image_logits)
        return logits.astype(jnp.float32)

    def loss_mask(self, cur_ids: jax.Array, sample: dict) -> jax.Array:
        return sample["valid"]

    def teacher_features(self, tp, ids: jax.Array, sample: dict) -> jax.Array:
        return self._teacher().apply({"params": tp}, ids, None, sample["valid"], method=LLaDA.features)

    def rollout_tokens(self, tp, feat, cur_ids, step, key, sample):
        """The student decides step `step` (b,) on its own side, no CFG: Gumbel-max tokens (temperature 1),
        the keep_n[step] least confident masked image cells stay masked. -> (cur_ids, new_map) (b, T)."""
        t = self.sampling.temperature
        masked = (cur_ids == self.mask_id) & (sample["order"] >= 0)
        logits = self.head(tp, feat)
        k_sample, k_conf = jax.random.split(key)
        sampled = gumbel_max_sample(logits, t, jax.random.uniform(k_sample, logits.shape))
        probs = jnp.take_along_axis(jax.nn.softmax(logits, axis=-1), sampled[..., None], axis=-1)[..., 0]
        conf = jnp.where(masked, remask_confidence(probs, t, jax.random.uniform(k_conf, probs.shape)), -jnp.inf)
        keep_n = jnp.asarray(dimoo_keep_n(self.steps, self.grid[0] * self.grid[1]), jnp.int32)
        n_fix = jnp.sum(masked, axis=1, keepdims=True) - keep_n[jnp.clip(step, 0, self.steps - 1)][:, None]
        cur_ids, _, selected = select_top_k(cur_ids, masked, sampled + self.layout.text_vocab_size, conf, n_fix)
        return cur_ids, selected | sample["always_new"]

    def random_conditions(self, key: jax.Array, n: int):
        raise ConfigError("DiMOO trajectories need prompts and the sampler's feature capture; train from a dataset")

    def capture(self, tp, conditions, key):
        raise ConfigError("DiMOO trajectory capture needs sample_dimoo to record per-step features (not available yet)")


@functools.lru_cache(maxsize=None)
def random_teacher(cfg: LLaDAConfig):
    """jit(key) -> randomly initialised LLaDA params (float32)."""
    ids = jnp.zeros((1, 4), jnp.int32)
    return jax.jit(lambda key: LLaDA(cfg, jnp.float32).init(key, ids)["params"])


def build_dimoo(cfg: TrainConfig) -> tuple[DiMOOFamily, dict, Optional[dict], dict, dict]:
    """-> (family, teacher params, initial shortcut params or None, base configs, base params).

    cfg.teacher: {'llada': LLaDAConfig fields, 'layout': TokenLayout fields} for a random teacher (with
    teacher_weights both come from the weights dir), plus optional 'grid' [rows, cols] and 'seq_len'.
    cfg.shortcut: n_block, bottleneck_ratio, embed_t. cfg.sampling: DiMOOSampling fields.
    """
    extra = {k: cfg.teacher[k] for k in ("grid", "seq_len") if k in cfg.teacher}
    try:
        if cfg.teacher_weights:
            family_name, configs, params = load_weights(cfg.teacher_weights)
            if family_name != "dimoo":
                raise ConfigError(f"{cfg.teacher_weights} holds {family_name!r} weights, the config trains dimoo")
            configs = {k: v for k, v in configs.items() if k != "shortcut"}
            params = {k: v for k, v in params.items() if k != "shortcut"}
            lcfg, layout = LLaDAConfig.from_dict(configs["llada"]), TokenLayout.from_dict(configs["layout"])
        else:
            lcfg, layout = LLaDAConfig(**cfg.teacher.get("llada", {})), TokenLayout.from_dict(cfg.teacher["layout"])
            configs = {"llada": lcfg.to_dict(), "layout": layout.to_dict()}
            params = {"llada": random_teacher(lcfg)(jax.random.PRNGKey(cfg.seed + 1))}
        scfg = DiMOOShortcutConfig.from_llada(lcfg, **cfg.shortcut)
        sampling = DiMOOSampling(**{**cfg.sampling, "mode": "vanilla"})
        sampling.validate()
    except (TypeError, ValueError, KeyError) as e:
        raise ConfigError(f"dimoo teacher/shortcut/sampling: {e}") from None
    init = None
    if cfg.init_shortcut:
        _, sconfigs, sparams = load_weights(cfg.init_shortcut)
        if "shortcut" not in sparams or DiMOOShortcutConfig.from_dict(sconfigs["shortcut"]) != scfg:
            raise ConfigError(f"{cfg.init_shortcut} holds no shortcut with config {scfg}")
        init = sparams["shortcut"]
    extra = {k: tuple(v) if k == "grid" else v for k, v in extra.items()}
    family = DiMOOFamily(lcfg, layout, scfg, sampling, compute_dtype=cfg.compute_dtype, teacher_dtype=cfg.teacher_dtype,
                         attention_impl=cfg.attention_impl, **extra)
    return family, params["llada"], init, configs, params
