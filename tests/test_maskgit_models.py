"""Parity of MaskTransformer and MaskGITShortcut with the original PyTorch modules (fp32 fixtures)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import fixture_path, load_npz
from migm_jax.convert.maskgit import maskgit_shortcut, shortcut_params, transformer_params
from migm_jax.convert.state_dict import CheckpointError
from migm_jax.convert.torch_file import load_torch_file
from migm_jax.models.maskgit import MaskTransformer, MaskTransformerConfig, without_kv_biases
from migm_jax.models.shortcut import MaskGITShortcut, MaskGITShortcutConfig

ATOL = 1e-4


def n_params(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def test_transformer_matches_original(maskgit_small):
    cfg, params = maskgit_small
    io = load_npz("maskgit_transformer", "io.npz")
    model = MaskTransformer(cfg)
    args = (jnp.asarray(io["in_img_token"], jnp.int32), jnp.asarray(io["in_y"], jnp.int32), jnp.asarray(io["in_drop_label"]))
    ids = model.apply({"params": params}, *args, method=MaskTransformer.input_ids)
    np.testing.assert_array_equal(ids, io["dbg_input_ids_with_cls"])
    emb = model.apply({"params": params}, ids, method=MaskTransformer.embed)
    np.testing.assert_allclose(emb, io["dbg_x_plus_pos"], atol=ATOL)
    logits, feat = model.apply({"params": params}, *args)
    assert logits.shape == (4, 64, 1024) and feat.shape == (4, 65, 64)
    np.testing.assert_allclose(feat, io["out_last_feat"], atol=ATOL)
    np.testing.assert_allclose(logits, io["out_logits"], atol=ATOL)


def test_padded_sequence_matches_original(maskgit_small):
    """seq_multiple pads T = 65 to 128 rows that no query attends to: the original's outputs, unchanged."""
    cfg, params = maskgit_small
    io = load_npz("maskgit_transformer", "io.npz")
    args = (jnp.asarray(io["in_img_token"], jnp.int32), jnp.asarray(io["in_y"], jnp.int32), jnp.asarray(io["in_drop_label"]))
    logits, feat = MaskTransformer(cfg, seq_multiple=64).apply({"params": params}, *args)
    assert feat.shape == (4, 65, 64)
    np.testing.assert_allclose(feat, io["out_last_feat"], atol=ATOL)
    np.testing.assert_allclose(logits, io["out_logits"], atol=ATOL)


def test_class_token_apart_matches_original(maskgit_small):
    """Attention over the 64 image tokens (the fused kernel's length) with the class token's key merged by its
    softmax weight and its query apart: the original's outputs (XLA's implementation here, float32)."""
    cfg, params = maskgit_small
    io = load_npz("maskgit_transformer", "io.npz")
    args = (jnp.asarray(io["in_img_token"], jnp.int32), jnp.asarray(io["in_y"], jnp.int32), jnp.asarray(io["in_drop_label"]))
    logits, feat = MaskTransformer(cfg, attention_impl="xla", class_token_apart=True).apply({"params": params}, *args)
    np.testing.assert_allclose(feat, io["out_last_feat"], atol=ATOL)
    np.testing.assert_allclose(logits, io["out_logits"], atol=ATOL)
    with pytest.raises(ValueError, match="class_token_apart needs attention_impl"):
        MaskTransformer(cfg, class_token_apart=True).apply({"params": params}, *args)


def test_folded_kv_biases_compute_the_same_features(maskgit_small):
    """The sampler's form (`without_kv_biases`, kv_bias=False) equals the checkpoint's form, with non-zero
    attention biases (the fixture's are zero, as PyTorch initialises them)."""
    cfg, params = maskgit_small
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: jnp.asarray(rng.normal(size=x.shape), jnp.float32)
        if "attn" in str(path) and getattr(path[-1], "key", None) == "bias" else x, params)
    io = load_npz("maskgit_transformer", "io.npz")
    args = (jnp.asarray(io["in_img_token"], jnp.int32), jnp.asarray(io["in_y"], jnp.int32), jnp.asarray(io["in_drop_label"]))
    feat = MaskTransformer(cfg).apply({"params": params}, *args, method=MaskTransformer.features)
    folded = without_kv_biases(params)
    assert set(folded["blocks_0"]["attn"]["k"]) == {"kernel"} and set(folded["blocks_0"]["attn"]["v"]) == {"kernel"}
    feat_folded = MaskTransformer(cfg, kv_bias=False).apply({"params": folded}, *args, method=MaskTransformer.features)
    assert float(jnp.abs(feat - io["out_last_feat"]).max()) > 0.1  # the biases matter
    np.testing.assert_allclose(feat_folded, feat, atol=ATOL)


def test_transformer_bf16_close_to_fp32(maskgit_small):
    cfg, params = maskgit_small
    io = load_npz("maskgit_transformer", "io.npz")
    args = (jnp.asarray(io["in_img_token"], jnp.int32), jnp.asarray(io["in_y"], jnp.int32), jnp.asarray(io["in_drop_label"]))
    logits, _ = MaskTransformer(cfg, jnp.bfloat16).apply({"params": params}, *args)
    assert logits.dtype == jnp.float32
    np.testing.assert_allclose(logits, io["out_logits"], atol=0.15)


@pytest.mark.parametrize("name,max_new", [("maskgit_shortcut", None), ("maskgit_shortcut_nblock2", None),
                                          ("maskgit_shortcut", 6), ("maskgit_shortcut", 20)])
def test_shortcut_matches_original(name, max_new, maskgit_small):
    """Dense masked keys, and keys compacted to `max_new` slots (6 = exactly the new tokens per row)."""
    tcfg, tparams = maskgit_small
    cfg, params = maskgit_shortcut(fixture_path(name, "shortcut.pth"), heads=4)
    assert cfg.n_block == (2 if name.endswith("nblock2") else 1) and cfg.width == 32
    io = load_npz(name, "io.npz")
    new_map = io["in_new_token_map"]
    ids = np.random.default_rng(0).integers(0, 2026, new_map.shape)  # junk where the map is False
    ids[new_map] = io["in_new_token_ids"].reshape(-1)
    model = MaskTransformer(tcfg)
    emb = model.apply({"params": tparams}, jnp.asarray(ids, jnp.int32), method=MaskTransformer.embed)
    out = MaskGITShortcut(cfg, max_new_tokens=max_new).apply({"params": params}, jnp.asarray(io["in_prev_feat"]), emb,
                                     jnp.asarray(new_map), jnp.asarray(io["in_mask_ratio"]))
    np.testing.assert_allclose(out, io["out_feat"], atol=ATOL)
    logits = model.apply({"params": tparams}, out, method=MaskTransformer.head)
    np.testing.assert_allclose(logits, io["out_logits_via_backbone_head"], atol=ATOL)


def test_shortcut_rows_independent_of_other_rows_maps(maskgit_small, maskgit_shortcut_small):
    """Rows with different numbers of new tokens in one batch equal their single-row results."""
    tcfg, tparams = maskgit_small
    cfg, params = maskgit_shortcut_small
    rng = np.random.default_rng(1)
    prev = jnp.asarray(rng.normal(size=(2, 65, 64)), jnp.float32)
    emb = jnp.asarray(rng.normal(size=(2, 65, 64)) * 0.3, jnp.float32)
    new_map = np.zeros((2, 65), bool)
    new_map[0, [3, 9]] = True
    new_map[1, [1, 2, 30, 40, 50]] = True
    ratio = jnp.asarray([0.5, 0.25])
    sc = MaskGITShortcut(cfg)
    both = sc.apply({"params": params}, prev, emb, jnp.asarray(new_map), ratio)
    for r in range(2):
        one = sc.apply({"params": params}, prev[r:r + 1], emb[r:r + 1], jnp.asarray(new_map[r:r + 1]), ratio[r:r + 1])
        np.testing.assert_allclose(both[r:r + 1], one, atol=1e-5)


def test_real_sizes_parameter_counts():
    cfg = MaskTransformerConfig.preset("base")
    dummy = (jnp.zeros((1, 32, 32), jnp.int32), jnp.zeros((1,), jnp.int32), jnp.zeros((1,), bool))
    shapes = jax.eval_shape(lambda: MaskTransformer(cfg).init(jax.random.PRNGKey(0), *dummy))
    assert n_params(shapes) == 176_306_666
    scfg = MaskGITShortcutConfig()
    f = jnp.zeros((1, 1025, 768))
    shapes = jax.eval_shape(lambda: MaskGITShortcut(scfg).init(jax.random.PRNGKey(0), f, f, jnp.ones((1, 1025), bool), jnp.ones((1,))))
    assert n_params(shapes) == 5_081_914


def _transformer_state_dict():
    return dict(load_torch_file(fixture_path("maskgit_transformer", "MaskGIT_small.pth"))["model_state_dict"])


def test_transformer_converter_reports_missing_and_unexpected(maskgit_small):
    cfg, _ = maskgit_small
    sd = _transformer_state_dict()
    del sd["transformer.layers.1.0.fn.mha.in_proj_bias"]
    sd["extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(CheckpointError, match=r"missing keys.*transformer\.layers\.1\.0\.fn\.mha\.in_proj_bias.*unexpected keys.*extra\.weight"):
        transformer_params(sd, cfg, "test")


def test_transformer_converter_reports_shape_mismatch(maskgit_small):
    cfg, _ = maskgit_small
    sd = _transformer_state_dict()
    sd["last_layer.2.weight"] = sd["last_layer.2.weight"][:, :32]
    with pytest.raises(CheckpointError, match=r"last_dense.*kernel.*shape"
                                              r".*\(checkpoint key last_layer\.2\.weight, stored shape \(64, 32\)\)"):
        transformer_params(sd, cfg, "test")


def test_shortcut_converter_names_checkpoint_key_of_split_qkv(maskgit_shortcut_small):
    cfg, _ = maskgit_shortcut_small
    sd = dict(load_torch_file(fixture_path("maskgit_shortcut", "shortcut.pth")))
    sd["blocks.0.self_attn.fn.mha.in_proj_weight"] = sd["blocks.0.self_attn.fn.mha.in_proj_weight"][:, :31]
    with pytest.raises(CheckpointError) as e:
        shortcut_params(sd, cfg, "test")
    for part in ("q", "k", "v"):
        assert (f"['blocks_0']['self_attn']['{part}']['kernel']: shape (31, 32) != expected (32, 32) "
                "(checkpoint key blocks.0.self_attn.fn.mha.in_proj_weight, stored shape (96, 31))") in str(e.value)


def test_shortcut_converter_is_strict(maskgit_shortcut_small):
    cfg, _ = maskgit_shortcut_small
    sd = dict(load_torch_file(fixture_path("maskgit_shortcut", "shortcut.pth")))
    sd.pop("adaLN_modulation.bias")
    with pytest.raises(CheckpointError, match="adaLN_modulation.bias"):
        shortcut_params(sd, cfg, "test")


def test_missing_checkpoint_is_one_line_error():
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*nope.pth"):
        maskgit_shortcut("nope.pth")
