"""Lumina-DiMOO adaptor of the generic trainer: teacher LLaDA, student DiMOOShortcut (interface: maskgit_family.py).

Trajectory rows are whole (right-padded) sequences of one CFG side: ids (T,) with the prompt, the
image region and padding; order (T,) = fixing step of the image cells, -1 elsewhere; valid (T,) bool
(False = padding); always_new (T,) bool = the cond prompt positions (new tokens at every step, as the
original's get_samples; all False for uncond rows and with no_prompt).
Loss and KL cover every valid position (the original's MSE over the whole sequence), KL on the
codebook columns of the head.

Conditions are prompts: `random_conditions` draws rows uniformly from the family's tokenized prompt
list (the original instead runs each of its 2000 train prompts once); `capture` runs the vanilla
sampler with feature capture and returns the cond and uncond rows of every image, padded to seq_len.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from migm_jax.models.dimoo_shortcut import DiMOOShortcut, DiMOOShortcutConfig
from migm_jax.models.llada import LLaDA, LLaDAConfig
from migm_jax.models.vqmodel import VQModelConfig
from migm_jax.sampling.dimoo import (DiMOOModels, DiMOOSampling, build_sampler, gumbel_max_sample, mask_by_random_topk,
                                     sample_dimoo, trajectory_sampling)
from migm_jax.sampling.dimoo_prompts import PromptBatch, TokenLayout, load_tokenizer, prompt_strings, region_length
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
    prompt_ids: tuple[tuple[int, ...], ...] = ()  # tokenized cond prompts (templates applied)
    uncond_ids: tuple[int, ...] = ()
    compute_dtype: str = "bfloat16"
    teacher_dtype: str = "bfloat16"
    attention_impl: Optional[str] = None
    prompt_lines: Optional[tuple[int, int]] = None  # draw from prompt_ids[start:stop] only (None: all)

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
        lengths = jnp.sum(sample["valid"], axis=-1, dtype=jnp.int32)  # valid is right padding
        return self._teacher().apply({"params": tp}, ids, None, None, lengths, method=LLaDA.features)

    def rollout_tokens(self, tp, feat, cur_ids, step, key, sample):
        """The student decides step `step` (b,) on its own side, no CFG: Gumbel-max tokens (the sampling temperature),
        the keep_n[step] least confident masked image cells stay masked. -> (cur_ids, new_map) (b, T)."""
        t = self.sampling.temperature
        masked = (cur_ids == self.mask_id) & (sample["order"] >= 0)
        logits = self.head(tp, feat)
        k_sample, k_conf = jax.random.split(key)
        sampled = gumbel_max_sample(logits, t, jax.random.uniform(k_sample, logits.shape))
        probs = jnp.take_along_axis(jax.nn.softmax(logits, axis=-1), sampled[..., None], axis=-1)[..., 0]
        keep_n = jnp.asarray(dimoo_keep_n(self.steps, self.grid[0] * self.grid[1]), jnp.int32)
        keep = keep_n[jnp.clip(step, 0, self.steps - 1)][:, None]
        stay = mask_by_random_topk(keep, probs, t, jax.random.uniform(k_conf, probs.shape), masked)
        selected = masked & ~stay
        cur_ids = jnp.where(selected, sampled + self.layout.text_vocab_size, cur_ids)
        return cur_ids, selected | sample["always_new"]

    def random_conditions(self, key: jax.Array, n: int) -> PromptBatch:
        """n prompt rows drawn uniformly (with replacement) from `prompt_ids` (its `prompt_lines` slice).

        The table is padded to the longest prompt of the whole file, so train and val splits drawn
        from different slices share one sequence length."""
        if not self.prompt_ids:
            raise ConfigError("DiMOO trajectories need prompts: set teacher.prompts (a text file) or teacher.prompt_ids")
        start, stop = self.prompt_lines or (0, len(self.prompt_ids))
        if not 0 <= start < stop <= len(self.prompt_ids):
            raise ConfigError(f"teacher.prompt_lines [{start}, {stop}) is outside the {len(self.prompt_ids)} prompts")
        table = PromptBatch.from_ids(self.prompt_ids, self.uncond_ids, self.grid, self.layout)
        idx = jax.random.randint(key, (n,), start, stop)
        return jax.tree.map(lambda x: jnp.asarray(x)[idx], table)

    def preview(self, base_configs: dict, base_params: dict, tp, sp, batch: PromptBatch, key: jax.Array,
                budget: Optional[int]) -> Optional[np.ndarray]:
        """Images (b,H,W,3) uint8 of the prompt rows `batch`: the teacher alone (budget None) or the
        shortcut `sp` at `budget`; None when the teacher has no VQ decoder."""
        if "vq" not in base_configs:
            return None
        models = DiMOOModels(self.llada, self.layout, self.shortcut, VQModelConfig.from_dict(base_configs["vq"]),
                             self.teacher_dtype, self.attention_impl)
        sampling = self.sampling if budget is None else dataclasses.replace(self.sampling, mode="shortcut", budget=budget)
        params = {"llada": tp, "shortcut": sp, "vq": base_params["vq"]}
        return np.asarray(build_sampler(models, sampling)(params, batch, key)["images"])

    def capture(self, tp, batch: PromptBatch, key: jax.Array) -> dict:
        """Vanilla sampling of `batch` with feature capture -> trajectories (see trajectories.py), rows
        interleaved [image 0 cond, image 0 uncond, ...] (cond only when cfg_scale is 0), padded to seq_len."""
        models = DiMOOModels(self.llada, self.layout, dtype=self.teacher_dtype, attention_impl=self.attention_impl)
        out = sample_dimoo(models, self.sampling, {"llada": tp}, batch, key, capture=True, decode=False)
        trace, b = out["trace"], batch.cond_ids.shape[0]
        order_cells = jnp.sum(trace["mask"].astype(jnp.int32), axis=0)  # steps after which still masked = fixing step
        final, rows = trace["tokens"][-1], jnp.arange(b)[:, None]
        prompt_new = (jnp.arange(batch.cond_ids.shape[1])[None] < batch.prompt_len[:, None]) & (not self.sampling.no_prompt)
        sides = [(batch.cond_ids, batch.cond_valid, batch.cond_image_positions(), prompt_new),
                 (batch.uncond_ids, batch.uncond_valid, batch.uncond_image_positions(), jnp.zeros_like(batch.uncond_valid))]
        per_side = []
        for (ids, valid, pos, new), feat in zip(sides, trace["features"]):
            pad = self.seq_len - ids.shape[1]
            if pad < 0:
                raise ConfigError(f"sequences of {ids.shape[1]} tokens exceed the trajectories' seq_len {self.seq_len}")
            row = lambda x, value: jnp.pad(x, [(0, 0), (0, pad)], constant_values=value)
            per_side.append({
                "feat": jnp.pad(feat.transpose(1, 0, 2, 3), [(0, 0), (0, 0), (0, pad), (0, 0)]).astype(jnp.bfloat16),
                "ids": row(ids.at[rows, pos].set(final), 0).astype(jnp.int32),
                "order": row(jnp.full(ids.shape, -1, jnp.int32).at[rows, pos].set(order_cells), -1),
                "valid": row(valid, False), "always_new": row(new, False),
            })
        traj = {k: jnp.stack([side[k] for side in per_side], axis=1) for k in per_side[0]}
        traj = {k: v.reshape((-1,) + v.shape[2:]) for k, v in traj.items()}
        sides_n = len(per_side)
        return dict(traj, label=jnp.full((b * sides_n,), -1, jnp.int32), half=jnp.tile(jnp.arange(sides_n, dtype=jnp.int32), b))


def prompt_table(cfg: TrainConfig, layout: TokenLayout) -> tuple[tuple[tuple[int, ...], ...], tuple[int, ...]]:
    """(cond prompt ids, uncond prompt ids) from teacher.prompts (text file) or teacher.prompt_ids / uncond_ids."""
    t = cfg.teacher
    if "prompts" in t:
        if not cfg.teacher_weights:
            raise ConfigError("teacher.prompts needs teacher_weights (its tokenizer); give teacher.prompt_ids instead")
        with open(t["prompts"]) as f:
            texts = [line.strip() for line in f if line.strip()]
        if not texts:
            raise ConfigError(f"teacher.prompts file {t['prompts']} holds no prompt (one per line)")
        tokenizer = load_tokenizer(os.path.join(cfg.teacher_weights, "tokenizer"))
        ids = lambda s: tuple(int(i) for i in tokenizer(s)["input_ids"])
        return tuple(ids(prompt_strings(p)[0]) for p in texts), ids(prompt_strings(texts[0])[1])
    return tuple(tuple(p) for p in t.get("prompt_ids", ())), tuple(t.get("uncond_ids", (layout.uncond,)))


@functools.lru_cache(maxsize=None)
def random_teacher(cfg: LLaDAConfig):
    """jit(key) -> randomly initialised LLaDA params (float32)."""
    ids = jnp.zeros((1, 4), jnp.int32)
    return jax.jit(lambda key: LLaDA(cfg, jnp.float32).init(key, ids)["params"])


def build_dimoo(cfg: TrainConfig) -> tuple[DiMOOFamily, dict, Optional[dict], dict, dict]:
    """-> (family, teacher params, initial shortcut params or None, base configs, base params).

    cfg.teacher: {'llada': LLaDAConfig fields, 'layout': TokenLayout fields} for a random teacher (with
    teacher_weights both come from the weights dir), plus optional 'grid' [rows, cols] (64x64), prompts:
    'prompts' (a text file, one prompt per line, tokenized with the weights dir's tokenizer) or
    'prompt_ids' + 'uncond_ids' (token id lists), 'prompt_lines' [start, stop] (draw only from these
    prompts, e.g. a validation slice), and 'seq_len' (default: the longest sequence).
    cfg.shortcut: n_block, bottleneck_ratio, embed_t. cfg.sampling: DiMOOSampling fields, plus sample.py's
    defaults (`trajectory_sampling`).
    """
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
        sampling = trajectory_sampling(cfg.sampling)
        sampling.validate()
    except (TypeError, ValueError, KeyError, OSError) as e:
        raise ConfigError(f"dimoo teacher/shortcut/sampling: {e}") from None
    init = None
    if cfg.init_shortcut:
        _, sconfigs, sparams = load_weights(cfg.init_shortcut)
        if "shortcut" not in sparams or DiMOOShortcutConfig.from_dict(sconfigs["shortcut"]) != scfg:
            raise ConfigError(f"{cfg.init_shortcut} holds no shortcut with config {scfg}")
        init = sparams["shortcut"]
    grid = tuple(cfg.teacher.get("grid", (64, 64)))
    prompts, uncond = prompt_table(cfg, layout)
    longest = max([len(p) for p in prompts] + [len(uncond)]) + region_length(grid)
    family = DiMOOFamily(lcfg, layout, scfg, sampling, grid, cfg.teacher.get("seq_len", longest if prompts else 4224),
                         prompts, uncond, cfg.compute_dtype, cfg.teacher_dtype, cfg.attention_impl,
                         tuple(cfg.teacher["prompt_lines"]) if "prompt_lines" in cfg.teacher else None)
    return family, params["llada"], init, configs, params
