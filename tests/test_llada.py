"""LLaDA backbone (Lumina-DiMOO) and its HF safetensors converter vs the original PyTorch model (fp32 fixtures)."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from jax.sharding import SingleDeviceSharding
from safetensors import safe_open
from safetensors.numpy import save_file

from conftest import fixture_path, load_npz
from migm_jax.convert.dimoo import llada, llada_abstract_params
from migm_jax.convert.state_dict import CheckpointError
from migm_jax.models.llada import LLaDA, LLaDAConfig

ATOL = 1e-4  # parity with the fp32 reference (its own fp32 noise is < 3e-6)
SELF_ATOL = 1e-5  # the port against itself with another batch layout / reduction order
TEXT_VOCAB, CODEBOOK = 512, 256  # token layout of the small fixtures
NAMES = ["llada", "llada_gqa"]


@pytest.fixture(scope="module", params=NAMES)
def backbone(request):
    cfg, params = llada(fixture_path(request.param))
    return request.param, cfg, params, load_npz(request.param, "io.npz")


def read_all(path: str) -> dict:
    with safe_open(path, framework="numpy") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def fixture_tensors(name: str) -> dict:
    """Every tensor of a fixture folder, whatever its sharding."""
    d = fixture_path(name)
    return {k: v for f in sorted(os.listdir(d)) if f.endswith(".safetensors") for k, v in read_all(os.path.join(d, f)).items()}


def single_file_copy(tmp_path, name: str, tensors: dict) -> str:
    """A fixture folder rewritten as config.json + one model.safetensors holding `tensors`."""
    out = tmp_path / name
    out.mkdir()
    shutil.copy(fixture_path(name, "config.json"), out / "config.json")
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    return str(out)


def test_matches_original(backbone):
    name, cfg, params, io = backbone
    assert cfg.n_kv_heads == (2 if name == "llada_gqa" else 4) and cfg.embedding_size == 768
    model = LLaDA(cfg, jnp.float32)
    ids = jnp.asarray(io["in_input_ids"], jnp.int32)
    (logits, feat), state = model.apply({"params": params}, ids, mutable="intermediates")
    assert logits.shape == (2, 40, 768) and feat.shape == (2, 40, 64) and logits.dtype == jnp.float32
    np.testing.assert_allclose(logits, io["out_logits"], atol=ATOL)
    np.testing.assert_allclose(feat, io["out_last_feat"], atol=ATOL)

    inter = state["intermediates"]["transformer"]
    emb = model.apply({"params": params}, ids, method=LLaDA.embed)
    np.testing.assert_allclose(emb, io["dbg_embeddings"], atol=ATOL)
    for i in range(cfg.n_layers):
        for part in ("attn_branch", "mlp_branch", "out"):
            np.testing.assert_allclose(inter[f"blocks_{i}"][part][0], io[f"dbg_block{i}_{part}"], atol=ATOL)
    np.testing.assert_allclose(inter["pre_final_norm"][0], io["dbg_pre_final_norm"], atol=ATOL)

    image = model.apply({"params": params}, feat, TEXT_VOCAB, CODEBOOK, method=LLaDA.image_logits)
    np.testing.assert_allclose(image, io["out_logits_image_range"], atol=ATOL)
    np.testing.assert_allclose(image, logits[..., TEXT_VOCAB:TEXT_VOCAB + CODEBOOK], atol=SELF_ATOL)
    np.testing.assert_allclose(model.apply({"params": params}, ids, method=LLaDA.features), feat, atol=SELF_ATOL)


def test_padded_batch_equals_separate_rows(backbone):
    """Rows of length 40, 29 (right-padded) and 23 (left-padded, shifted positions) in one batch."""
    _, cfg, params, io = backbone
    run = jax.jit(lambda *a: LLaDA(cfg, jnp.float32).apply({"params": params}, *a))
    full, short = io["in_input_ids"][0], io["in_input_ids"][1, :29]
    left = io["in_input_ids"][1, 5:28]
    junk = np.random.default_rng(0).integers(0, 768, (3, 40))
    ids = junk.copy()
    ids[0], ids[1, :29], ids[2, 17:] = full, short, left
    mask = np.zeros((3, 40), bool)
    mask[0], mask[1, :29], mask[2, 17:] = True, True, True
    positions = np.broadcast_to(np.arange(40), (3, 40)).copy()
    positions[2] -= 17
    logits, feat = run(jnp.asarray(ids, jnp.int32), jnp.asarray(positions, jnp.int32), jnp.asarray(mask))
    for row, sl, single in ((0, slice(None), full), (1, slice(0, 29), short), (2, slice(17, None), left)):
        ref_logits, ref_feat = run(jnp.asarray(single[None], jnp.int32))
        np.testing.assert_allclose(feat[row, sl], ref_feat[0], atol=SELF_ATOL)
        np.testing.assert_allclose(logits[row, sl], ref_logits[0], atol=SELF_ATOL)
    np.testing.assert_allclose(feat[0], io["out_last_feat"][0], atol=ATOL)


def test_single_file_equals_sharded(tmp_path):
    with open(fixture_path("llada", "model.safetensors.index.json")) as f:
        assert len(set(json.load(f)["weight_map"].values())) == 2
    cfg, params = llada(fixture_path("llada"))
    cfg1, params1 = llada(single_file_copy(tmp_path, "llada", fixture_tensors("llada")))
    assert cfg1 == cfg
    jax.tree_util.tree_map(np.testing.assert_array_equal, params1, params)
    assert params["transformer"]["blocks_1"]["up_proj"]["kernel"].shape == (64, 128)
    assert params["transformer"]["ff_out"]["kernel"].shape == (64, 768)


def test_dtype_and_shardings(tmp_path):
    dev = SingleDeviceSharding(jax.devices()[0])
    seen = []
    cfg, params = llada(fixture_path("llada_gqa"), dtype=jnp.bfloat16, shardings=lambda p: seen.append(p) or dev)
    leaves = jax.tree_util.tree_leaves_with_path(params)
    assert len(seen) == len(leaves) == 3 + 9 * cfg.n_layers
    assert ("transformer", "blocks_0", "k_proj", "kernel") in seen
    assert all(x.dtype == jnp.bfloat16 and x.sharding == dev for _, x in leaves)
    tree = jax.tree_util.tree_map(lambda _: dev, params)
    _, params_tree = llada(fixture_path("llada_gqa"), shardings=tree)
    assert all(x.dtype == jnp.float32 and x.sharding == dev for x in jax.tree_util.tree_leaves(params_tree))

    # a bf16 checkpoint stays bf16 (no float32 copy) and runs in bf16
    bf16 = {k: v.astype(ml_dtypes.bfloat16) for k, v in fixture_tensors("llada_gqa").items()}
    _, params_bf16 = llada(single_file_copy(tmp_path, "llada_gqa", bf16))
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree_util.tree_leaves(params_bf16))
    jax.tree_util.tree_map(np.testing.assert_array_equal, params_bf16, params)
    io = load_npz("llada_gqa", "io.npz")
    logits, feat = LLaDA(cfg).apply({"params": params_bf16}, jnp.asarray(io["in_input_ids"], jnp.int32))
    assert logits.dtype == feat.dtype == jnp.bfloat16
    # bf16 weights and activations (observed max 0.073 at logits up to 4.2): loose bound, not a parity check
    np.testing.assert_allclose(np.asarray(logits, np.float32), io["out_logits"], atol=0.15)


def _break(tmp_path, edit) -> str:
    tensors = fixture_tensors("llada_gqa")
    edit(tensors)
    return single_file_copy(tmp_path, "llada_gqa", tensors)


@pytest.mark.parametrize("edit, needle", [
    (lambda t: t.pop("model.transformer.blocks.1.v_proj.weight"), "missing keys (1): model.transformer.blocks.1.v_proj.weight"),
    (lambda t: t.update({"model.transformer.blocks.0.q_proj.bias": np.zeros(64, np.float32)}),
     "unexpected keys (1): model.transformer.blocks.0.q_proj.bias"),
    (lambda t: t.update({"model.transformer.blocks.0.k_proj.weight": np.zeros((64, 64), np.float32)}),
     "model.transformer.blocks.0.k_proj.weight: (64, 64) != expected (32, 64)"),
    (lambda t: t.update({"model.transformer.blocks.1.ff_out.weight": np.full((64, 128), np.nan, np.float32)}),
     "1 tensor(s) hold NaN or infinite values: model.transformer.blocks.1.ff_out.weight (model.safetensors)"),
])
def test_converter_errors(tmp_path, edit, needle):
    with pytest.raises(CheckpointError) as e:
        llada(_break(tmp_path, edit))
    assert needle in str(e.value)


def test_converter_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        llada(tmp_path / "nope")
    assert "nope" in str(e.value) and "\n" not in str(e.value)
    shutil.copy(fixture_path("llada", "config.json"), tmp_path / "config.json")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        llada(tmp_path)


def test_config():
    with open(fixture_path("llada", "config.json")) as f:
        hf = json.load(f)
    cfg = LLaDAConfig.from_hf_config(hf)
    assert cfg == LLaDAConfig(d_model=64, n_layers=2, n_heads=4, n_kv_heads=4, mlp_hidden_size=128, vocab_size=768,
                              embedding_size=768, rope_theta=500000.0, rms_norm_eps=1e-5, max_sequence_length=4096)
    assert LLaDAConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="weight_tying=True"):
        LLaDAConfig.from_hf_config({**hf, "weight_tying": True})
    with pytest.raises(ValueError, match="block_type='sequential'"):
        LLaDAConfig.from_hf_config({k: v for k, v in hf.items() if k != "block_type"})


def test_dimoo_8b_shapes():
    """Real sizes: 218,112,000 params per block, 8,081,805,312 in all, kept in bf16."""
    params = llada_abstract_params(LLaDAConfig.dimoo_8b(), jnp.bfloat16)
    leaves = jax.tree_util.tree_leaves(params)
    assert sum(int(np.prod(x.shape)) for x in leaves) == 8_081_805_312
    assert sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params["transformer"]["blocks_7"])) == 218_112_000
    assert all(x.dtype == jnp.bfloat16 for x in leaves)
    assert params["transformer"]["ff_out"]["kernel"].shape == (4096, 134548)
