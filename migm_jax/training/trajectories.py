"""Trajectories (the teacher's recorded sampling runs) and their expansion into training samples.

A batch of trajectories is a dict of arrays, one row per trajectory (one CFG half of one generation):
  feat   (n, N, T, C) bfloat16  last-layer feature entering each of the N steps
  ids    (n, T) int32           the final token ids at every position (what the base model reads)
  order  (n, T) int32           step at which each position was fixed; -1 = never masked
  label  (n,) int32             class id (MaskGIT) or -1; half (n,) int32: 0 cond, 1 uncond
plus optional family fields of shape (n, T): 'valid' (bool, False = padding) and 'always_new' (bool,
positions that are new tokens at every step: DiMOO's cond prompt).

A raw training sample is (trajectory, step s) for s in 0..N-2:
  prev_feat = feat[s], tgt_feat = feat[s+1] (T, C); ids, order, step = s (+ family fields).
`expand` turns raw samples into the shortcut's inputs exactly as the original get_samples.
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp
from jax.sharding import Sharding

Traj = dict[str, Any]


def image_mask_ratio(cur_ids: jax.Array, order: jax.Array, mask_id: int) -> jax.Array:
    """Fraction of the image cells (order >= 0) still masked in `cur_ids`: (b, T) -> (b,) float32."""
    image = order >= 0
    masked = jnp.sum((cur_ids == mask_id) & image, axis=1).astype(jnp.float32)
    return masked / jnp.sum(image, axis=1).astype(jnp.float32)


def expand(raw: dict, mask_id: int) -> dict:
    """Raw samples -> shortcut inputs (all arrays batched over the first axis).

    cur_ids (b, T): final ids with the positions fixed after step s (order > s) set to `mask_id`
      (the token state of tgt_feat); new_map (b, T) bool: positions fixed at step s (order == s),
      or-ed with raw['always_new'] when present; mask_ratio (b,): fraction of image cells masked in
      cur_ids (= maskgit_train_mask_ratios()[s] for MaskGIT, keep_n(s)/4096 for DiMOO).
    """
    s = raw["step"][:, None]
    order = raw["order"]
    cur_ids = jnp.where(order > s, mask_id, raw["ids"]).astype(jnp.int32)
    new_map = order == s
    if "always_new" in raw:
        new_map = new_map | raw["always_new"].astype(bool)
    extra = {k: raw[k] for k in ("valid", "always_new") if k in raw}
    return {
        "prev_feat": raw["prev_feat"], "tgt_feat": raw["tgt_feat"], "step": raw["step"], "order": order,
        "cur_ids": cur_ids, "new_map": new_map, "mask_ratio": image_mask_ratio(cur_ids, order, mask_id), **extra,
    }


def samples_per_trajectory(steps: int) -> int:
    return steps - 1


def gather_raw(traj: Traj, index: jax.Array, fields: tuple[str, ...]) -> dict:
    """Raw samples `index` (b,) int32 of a trajectory pool; sample i = (trajectory i // (N-1), step i % (N-1))."""
    per = samples_per_trajectory(traj["feat"].shape[1])
    t, s = index // per, (index % per).astype(jnp.int32)
    raw = {"prev_feat": traj["feat"][t, s], "tgt_feat": traj["feat"][t, s + 1], "step": s}
    raw.update({name: traj[name][t] for name in fields})
    return raw


@functools.lru_cache(maxsize=None)
def capture_fn(family, n_images: int, out_sharding: Optional[Sharding] = None):
    """jit(teacher params, key) -> the 2 * n_images trajectories of n_images conditions drawn from `key`
    (one compilation per family, size and layout)."""

    def capture(tp, key):
        k_cond, k_sample = jax.random.split(key)
        return family.capture(tp, family.random_conditions(k_cond, n_images), k_sample)

    return jax.jit(capture, out_shardings=out_sharding)
