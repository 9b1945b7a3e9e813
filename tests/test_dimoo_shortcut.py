"""DiMOO shortcut (MDMShortcut) through the masked new-token interface vs the original (fp32 fixtures), and its converter."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import fixture_path, load_npz
from migm_jax.convert.dimoo import dimoo_shortcut, llada, shortcut_config_from_state_dict, shortcut_params
from migm_jax.convert.state_dict import CheckpointError
from migm_jax.convert.torch_file import load_torch_file
from migm_jax.models.dimoo_shortcut import DiMOOShortcut, DiMOOShortcutConfig
from migm_jax.models.llada import LLaDA, LLaDAConfig

ATOL = 1e-4  # parity with the fp32 reference (its own fp32 noise is < 1e-6)
TEXT_VOCAB, CODEBOOK = 512, 256
PTH = fixture_path("dimoo_shortcut", "shortcut.pth")


@functools.partial(jax.jit, static_argnames=("cfg", "dtype", "slots"))
def run(cfg, params, *args, dtype=jnp.float32, slots=None):
    """DiMOOShortcut(cfg, dtype, max_new_tokens=slots).apply -> (next_feat, intermediates)."""
    return DiMOOShortcut(cfg, dtype, max_new_tokens=slots).apply({"params": params}, *args, mutable="intermediates")


@pytest.fixture(scope="module")
def models():
    base_cfg, base_params = llada(fixture_path("llada"))
    cfg, params = dimoo_shortcut(PTH, base_cfg)
    return base_cfg, base_params, cfg, params, load_npz("dimoo_shortcut", "io.npz")


def case_inputs(io, base_cfg, base_params, k: int, seed: int):
    """(prev_feat, new_token_emb, map, mask_ratio) of case k, batch 1; new_token_emb is wte of the new token at
    mapped positions and random junk everywhere else."""
    new_map = io[f"case{k}__in_new_token_map"]
    t = new_map.shape[1]
    ids = np.zeros((1, t), np.int32)
    ids[new_map] = io[f"case{k}__aux_new_token_ids"][0]
    emb = LLaDA(base_cfg, jnp.float32).apply({"params": base_params}, jnp.asarray(ids), method=LLaDA.embed)
    np.testing.assert_array_equal(np.asarray(emb)[new_map], io[f"case{k}__in_new_token"][0])
    junk = 3.0 * np.random.default_rng(seed).standard_normal(emb.shape).astype(np.float32)
    emb = np.where(new_map[..., None], np.asarray(emb), junk)
    return io[f"case{k}__in_prev_feat"], emb, new_map, io[f"case{k}__in_mask_ratio"]


def head(base_cfg, base_params, feat):
    return LLaDA(base_cfg, jnp.float32).apply({"params": base_params}, feat, TEXT_VOCAB, CODEBOOK, method=LLaDA.image_logits)


@pytest.mark.parametrize("k", [0, 1])
def test_matches_original(models, k):
    base_cfg, base_params, cfg, params, io = models
    prev, emb, new_map, ratio = case_inputs(io, base_cfg, base_params, k, seed=k)
    out, state = run(cfg, params, prev, emb, new_map, ratio)
    assert out.shape == prev.shape and out.dtype == jnp.float32
    np.testing.assert_allclose(out, io[f"case{k}__out_feat"], atol=ATOL)
    np.testing.assert_allclose(head(base_cfg, base_params, out), io[f"case{k}__out_image_logits_via_backbone_head"], atol=ATOL)

    inter = jax.tree_util.tree_map(lambda x: np.asarray(x[0])[0], state["intermediates"], is_leaf=lambda x: isinstance(x, tuple))
    dbg = lambda name: io[f"case{k}__dbg_{name}"][0]
    np.testing.assert_allclose(inter["new_token_proj_in_out"][new_map[0]], dbg("new_token_proj_in_out"), atol=ATOL)
    for name in ("proj_in_out", "ln_f_out", "modulated", "proj_out_out"):
        np.testing.assert_allclose(inter[name], dbg(name), atol=ATOL)
    block = inter["blocks_0"]
    np.testing.assert_allclose(block["cross_attn"]["attn_branch"], dbg("block0_cross_attn_attn_branch"), atol=ATOL)
    np.testing.assert_allclose(block["cross_attn"]["out"], dbg("block0_cross_attn_out"), atol=ATOL)
    np.testing.assert_allclose(block["self_attn"]["attn_branch"], dbg("block0_self_attn_attn_branch"), atol=ATOL)
    np.testing.assert_allclose(block["self_attn"]["out"], dbg("block0_out"), atol=ATOL)


def test_compacted_keys_match_original(models):
    """Keys gathered into as many slots as the busiest row has new tokens: the same outputs as the full map."""
    base_cfg, base_params, cfg, params, io = models
    p0, e0, m0, r0 = case_inputs(io, base_cfg, base_params, 0, seed=7)
    p1, e1, m1, r1 = case_inputs(io, base_cfg, base_params, 1, seed=8)
    pad = lambda a, fill: np.concatenate([a, np.broadcast_to(fill, (1, 8) + a.shape[2:])], axis=1)
    new_map = np.concatenate([m0, pad(m1, False)])
    slots = int(new_map.sum(axis=1).max())
    assert 0 < slots < new_map.shape[1]
    attn_mask = np.arange(40)[None] < np.array([[40], [32]])
    out, _ = run(cfg, params, np.concatenate([p0, pad(p1, 0.0)]), np.concatenate([e0, pad(e1, 0.0)]), new_map,
                 np.concatenate([r0, r1]), attn_mask, slots=slots)
    np.testing.assert_allclose(out[0], io["case0__out_feat"][0], atol=ATOL)
    np.testing.assert_allclose(out[1, :32], io["case1__out_feat"][0], atol=ATOL)


def test_padded_batch_matches_each_case(models):
    """Case 0 (T=40) and case 1 (T=32, right-padded to 40 with junk, map True on the padding) in one call."""
    base_cfg, base_params, cfg, params, io = models
    p0, e0, m0, r0 = case_inputs(io, base_cfg, base_params, 0, seed=2)
    p1, e1, m1, r1 = case_inputs(io, base_cfg, base_params, 1, seed=3)
    pad = lambda a, fill: np.concatenate([a, np.broadcast_to(fill, (1, 8) + a.shape[2:])], axis=1)
    junk = np.random.default_rng(4).standard_normal((1, 8, 64)).astype(np.float32)
    prev = np.concatenate([p0, pad(p1, junk)])
    emb = np.concatenate([e0, pad(e1, -junk)])
    new_map = np.concatenate([m0, pad(m1, True)])
    attn_mask = np.ones((2, 40), bool)
    attn_mask[1, 32:] = False
    out, _ = run(cfg, params, prev, emb, new_map, np.concatenate([r0, r1]), attn_mask)
    np.testing.assert_allclose(out[0], io["case0__out_feat"][0], atol=ATOL)
    np.testing.assert_allclose(out[1, :32], io["case1__out_feat"][0], atol=ATOL)


def test_row_without_new_tokens(models):
    """An all-False map = attention over an empty key set = zero attention output (as PyTorch's SDPA gives)."""
    base_cfg, base_params, cfg, params, io = models
    prev, emb, new_map, ratio = case_inputs(io, base_cfg, base_params, 0, seed=5)
    out, _ = run(cfg, params, prev, emb, np.zeros_like(new_map), ratio)
    zeroed = jax.tree_util.tree_map(lambda x: x, params)
    zeroed["blocks_0"]["cross_attn"]["attn_out"]["kernel"] = jnp.zeros_like(zeroed["blocks_0"]["cross_attn"]["attn_out"]["kernel"])
    ref, _ = run(cfg, zeroed, prev, emb, new_map, ratio)
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_bf16_runs_close(models):
    base_cfg, base_params, cfg, params, io = models
    prev, emb, new_map, ratio = case_inputs(io, base_cfg, base_params, 1, seed=6)
    out, _ = run(cfg, params, jnp.asarray(prev, jnp.bfloat16), emb, new_map, ratio, dtype=jnp.bfloat16)
    assert out.dtype == jnp.bfloat16
    # bf16 autocast-style rounding (observed max 0.024 at values up to 4.7): loose bound, not a parity check
    np.testing.assert_allclose(np.asarray(out, np.float32), io["case1__out_feat"][0:1], atol=0.08)


def test_converter_config(models):
    base_cfg, _, cfg, params, _ = models
    assert cfg == DiMOOShortcutConfig(d_model=64, n_block=1, bottleneck_ratio=2.0, embed_t=True, n_heads=4, n_kv_heads=4,
                                      mlp_hidden_size=128, rope_theta=500000.0, rms_norm_eps=1e-5)
    assert cfg.width == 32 and DiMOOShortcutConfig.from_dict(cfg.to_dict()) == cfg
    assert params["time_embedder"]["mlp_0"]["kernel"].shape == (256, 91)
    assert params["blocks_0"]["cross_attn"]["ff_proj"]["kernel"].shape == (32, 128)


@pytest.mark.parametrize("edit, needle", [
    (lambda t: t.pop("blocks.0.cross_attn.k_proj.weight"), "missing keys (1): blocks.0.cross_attn.k_proj.weight"),
    (lambda t: t.update({"blocks.0.self_attn.q_proj.bias": np.zeros(32, np.float32)}),
     "unexpected keys (1): blocks.0.self_attn.q_proj.bias"),
    (lambda t: t.update({"blocks.0.self_attn.up_proj.weight": np.zeros((96, 32), np.float32)}),
     "['blocks_0']['self_attn']['up_proj']['kernel']: shape (32, 96) != expected (32, 128) "
     "(checkpoint key blocks.0.self_attn.up_proj.weight, stored shape (96, 32))"),
])
def test_converter_errors(models, edit, needle):
    base_cfg = models[0]
    tensors = dict(load_torch_file(PTH))
    edit(tensors)
    with pytest.raises(CheckpointError) as e:
        shortcut_params(tensors, shortcut_config_from_state_dict(tensors, base_cfg), PTH)
    assert needle in str(e.value)


def test_converter_wrong_backbone_and_missing_file(models, tmp_path):
    base_cfg = models[0]
    with pytest.raises(CheckpointError, match="width 64"):
        dimoo_shortcut(PTH, LLaDAConfig.dimoo_8b())
    with pytest.raises(FileNotFoundError) as e:
        dimoo_shortcut(tmp_path / "nope.pth", base_cfg)
    assert "nope.pth" in str(e.value) and "\n" not in str(e.value)


def test_dimoo_8b_shortcut_size():
    """The released dimoo-shortcut.pth: width 2048, 32 heads of 64, MLP 12288; 219,797,204 params."""
    cfg = DiMOOShortcutConfig.from_llada(LLaDAConfig.dimoo_8b())
    feat = jnp.zeros((1, 2, 4096), jnp.float32)
    params = jax.eval_shape(lambda: DiMOOShortcut(cfg).init(
        jax.random.PRNGKey(0), feat, feat, jnp.ones((1, 2), bool), jnp.ones((1,), jnp.float32)))["params"]
    assert sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params)) == 219_797_204
    assert params["time_embedder"]["mlp_0"]["kernel"].shape == (256, 724)
    assert params["blocks_0"]["cross_attn"]["up_proj"]["kernel"].shape == (2048, 12288)
