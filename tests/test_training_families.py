"""Family adaptors: multi-step rollout (student-decided tokens follow the schedule), the DiMOO adaptor
(train steps on padded cond/uncond rows, keep_n rollout) and its `.pth` export round trip."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from migm_jax.apps.maskgit import random_params
from migm_jax.sampling.schedules import dimoo_keep_n, dimoo_mask_ratios, maskgit_schedule
from migm_jax.sharding import make_mesh
from migm_jax.training.config import TrainConfig, load_config
from migm_jax.training.loop import build_family
from migm_jax.training.step import forward, make_init, make_train_step, step_config
from migm_jax.training.trajectories import capture_fn, expand, gather_raw

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYOUT = {"mask": 492, "newline": 240, "boa": 500, "eoa": 501, "boi": 502, "eoi": 503, "uncond": 504,
          "text_vocab_size": 512, "codebook_size": 256}
DIMOO = TrainConfig(
    family="dimoo", teacher={"llada": {"d_model": 32, "n_layers": 1, "n_heads": 2, "n_kv_heads": 2, "mlp_hidden_size": 64,
                                       "vocab_size": 768, "embedding_size": 768}, "layout": LAYOUT, "grid": [2, 3],
                             "prompt_ids": [[11, 12, 13, 14, 15], [21, 22, 23]], "uncond_ids": [31, 504, 32]},
    shortcut={"n_block": 1, "bottleneck_ratio": 2}, sampling={"steps": 4}, compute_dtype="float32", teacher_dtype="float32",
    batch_size=4, lr=1e-3, ema_decay=0.9, kl_weight=0.1)


def synthetic_raw(rng, order_rows, ids_rows, feat_shape, extra=None):
    b = len(order_rows)
    raw = {"prev_feat": rng.normal(size=(b,) + feat_shape).astype(jnp.bfloat16),
           "tgt_feat": rng.normal(size=(b,) + feat_shape).astype(jnp.bfloat16),
           "order": np.stack(order_rows).astype(np.int32), "ids": np.stack(ids_rows).astype(np.int32)}
    return dict(raw, **(extra or {}))


def test_maskgit_rollout_follows_the_schedule():
    cfg = load_config(os.path.join(ROOT, "configs", "smoke.py"))
    family, teacher, _, _, _ = build_family(cfg)
    tc, n_steps, rng = family.transformer, family.steps, np.random.default_rng(0)
    sche = maskgit_schedule(n_steps, "arccos", tc.grid)
    orders = [np.concatenate([rng.permutation(np.repeat(np.arange(n_steps), sche)), [-1]]) for _ in range(4)]
    ids = [np.concatenate([rng.integers(0, tc.codebook_size, tc.grid ** 2), [tc.codebook_size + 2]]) for _ in range(4)]
    raw = synthetic_raw(rng, orders, ids, family.feature_shape, {"step": np.array([0, 1, 2, n_steps - 2], np.int32)})
    params = random_params(lambda: {"params": family.init_shortcut(jax.random.PRNGKey(0))}, 0)  # not run eagerly

    @jax.jit
    def run(raw):
        sample = expand(raw, family.mask_id)
        rolled = family.rollout_tokens(teacher, sample["prev_feat"], sample["cur_ids"], sample["step"] + 1,
                                       jax.random.PRNGKey(1), sample)
        return sample, rolled, [forward(family, cfg, params, teacher, sample, jax.random.PRNGKey(2), k) for k in (1, 2)]

    sample, (cur, new_map), ((est1, tgt1, mask1), (est2, tgt2, mask2)) = jax.device_get(run(raw))
    was = sample["cur_ids"] == family.mask_id
    for i, s in enumerate(raw["step"][:3]):
        assert np.sum(new_map[i]) == sche[s + 1] and not np.any(new_map[i] & ~was[i])
        np.testing.assert_array_equal(cur[i][~was[i]], sample["cur_ids"][i][~was[i]])
    # the last step cannot roll out: k is clipped to 1 there; elsewhere the target is the teacher's
    np.testing.assert_array_equal(est2[3], est1[3])
    np.testing.assert_array_equal(tgt2[3], tgt1[3])
    assert np.all(mask2[:3].sum(1) < mask1[:3].sum(1))


def test_dimoo_train_steps_rollout_and_export(tmp_path):
    from migm_jax.convert.dimoo import dimoo_shortcut
    from migm_jax.training.export import export_shortcut

    family, teacher, _, configs, base = build_family(DIMOO)
    assert family.seq_len == 5 + 12
    traj = jax.device_get(capture_fn(family, 2)(teacher, jax.random.PRNGKey(3)))
    keep = np.concatenate([[6], dimoo_keep_n(family.steps, 6)])
    assert traj["feat"].shape == (4, 4, 17, 32) and list(traj["half"]) == [0, 1, 0, 1]
    for i in range(4):
        cells = traj["order"][i] >= 0
        np.testing.assert_array_equal(np.bincount(traj["order"][i][cells], minlength=4), keep[:-1] - keep[1:])
        assert np.all(traj["ids"][i][cells] >= 512) and traj["valid"][i].sum() in (15, 17)
    assert [traj["always_new"][i].sum() for i in range(4)] in ([5, 0, 3, 0], [3, 0, 5, 0], [5, 0, 5, 0], [3, 0, 3, 0])
    raw = jax.device_get(gather_raw(traj, np.array([0, 4, 8, 11]), family.traj_fields))

    @jax.jit
    def check(traj, raw):
        start = jnp.where(traj["order"] >= 0, family.mask_id, traj["ids"])
        sample = expand(raw, family.mask_id)
        cur, _ = family.rollout_tokens(teacher, sample["prev_feat"], sample["cur_ids"], sample["step"] + 1,
                                       jax.random.PRNGKey(1), sample)
        return family.teacher_features(teacher, start, traj), sample["mask_ratio"], cur

    f0, ratio, cur = jax.device_get(check(traj, raw))
    v = traj["valid"]
    np.testing.assert_allclose(f0[v], traj["feat"][:, 0][v].astype(np.float32), atol=3e-2)
    np.testing.assert_array_equal(ratio, dimoo_mask_ratios(family.steps, 6)[raw["step"] + 1])
    masked = np.sum((cur == family.mask_id) & (raw["order"] >= 0), axis=1)
    np.testing.assert_array_equal(masked, keep[np.minimum(raw["step"] + 2, 4)])
    scfg, mesh = step_config(DIMOO), make_mesh(devices=jax.devices()[:1])
    state = make_init(family, scfg, mesh)(None, jax.random.PRNGKey(0))
    step = make_train_step(family, scfg, mesh, 1)
    losses = []
    for m in range(6):
        state, metrics = step(state, raw, teacher, jnp.int32(m))
        losses.append(float(metrics["loss"]))
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    (tmp_path / "teacher" / "tokenizer").mkdir(parents=True)  # a teacher weights dir's tokenizer goes along
    (tmp_path / "teacher" / "tokenizer" / "tokenizer.json").write_text("{}")
    paths = export_shortcut(str(tmp_path / "out"), family, configs, base, jax.device_get(state.ema),
                            teacher_dir=str(tmp_path / "teacher"))
    assert (tmp_path / "out" / "weights" / "tokenizer" / "tokenizer.json").read_text() == "{}"
    cfg_back, back = dimoo_shortcut(paths["pth"], family.llada)
    assert cfg_back == family.shortcut
    jax.tree.map(np.testing.assert_array_equal, back, jax.device_get(state.ema))


def test_dimoo_prompt_lines_restrict_the_drawn_prompts():
    import dataclasses

    family = build_family(DIMOO)[0]
    assert family.seq_len == 5 + 12
    second = dataclasses.replace(family, prompt_lines=(1, 2))
    rows = jax.device_get(second.random_conditions(jax.random.PRNGKey(0), 16))
    assert (rows.prompt_len == 3).all() and (rows.cond_ids[:, :3] == [21, 22, 23]).all()
    assert rows.cond_ids.shape[1] == jax.device_get(family.random_conditions(jax.random.PRNGKey(0), 2)).cond_ids.shape[1]
    with pytest.raises(ValueError, match=r"prompt_lines \[1, 3\) is outside the 2 prompts"):
        dataclasses.replace(family, prompt_lines=(1, 3)).random_conditions(jax.random.PRNGKey(0), 2)


def test_dimoo_sample_grid_rows_are_teacher_then_budgets(tmp_path):
    from PIL import Image

    from migm_jax.models.vqmodel import VQModel, VQModelConfig
    from migm_jax.training.preview import write_preview

    family, teacher, _, configs, base = build_family(DIMOO)
    assert write_preview(family, configs, base, teacher, None, (2,), 2, 0, str(tmp_path / "none.png")) is None
    vcfg = VQModelConfig(block_out_channels=(16, 32), layers_per_block=1, latent_channels=8, norm_num_groups=8,
                         num_vq_embeddings=256)
    vparams = random_params(lambda: VQModel(vcfg).init(jax.random.PRNGKey(1), jnp.zeros((1, 2, 2, 3))), 1)
    sp = random_params(lambda: {"params": family.init_shortcut(jax.random.PRNGKey(2))}, 2)  # shapes only: no eager init
    path = write_preview(family, {**configs, "vq": vcfg.to_dict()}, {**base, "vq": vparams}, teacher, sp, (2,), 2, 0,
                         str(tmp_path / "samples" / "grid.png"))
    grid = np.asarray(Image.open(path))
    assert grid.shape == (2 * (4 + 2) + 2, 2 * (6 + 2) + 2, 3)  # rows: vanilla, B=2; 2 images of 2x3 codes x 2 px
    assert not np.array_equal(grid[2:6], grid[8:12])
