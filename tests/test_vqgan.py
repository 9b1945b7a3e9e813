"""Parity of the taming VQGAN (decode_code, encode) with the original PyTorch VQModel, and its strict converter."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import fixture_path, load_npz
from migm_jax.convert.state_dict import CheckpointError
from migm_jax.convert.taming import taming_vqgan, vqgan_params
from migm_jax.convert.torch_file import load_torch_file
from migm_jax.models.vqgan import VQGAN, VQGANConfig

ATOL = 1e-4
CKPT, YAML = fixture_path("taming_vqgan", "last.ckpt"), fixture_path("taming_vqgan", "model.yaml")


def nhwc(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 2, 3, 1)


@pytest.fixture(scope="module")
def vqgan():
    return taming_vqgan(CKPT, YAML)


@pytest.fixture(scope="module")
def io():
    return load_npz("taming_vqgan", "io.npz")


@pytest.fixture(scope="module")
def state_dict():
    return load_torch_file(CKPT)["state_dict"]


def test_config_from_yaml(vqgan):
    cfg, _ = vqgan
    assert cfg == VQGANConfig(embed_dim=8, n_embed=64, z_channels=16, ch=32, ch_mult=(1, 2), num_res_blocks=1,
                              attn_resolutions=(16,), resolution=32, in_channels=3, out_ch=3)
    assert VQGANConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_decode_code_matches_original(vqgan, io):
    cfg, params = vqgan
    codes = jnp.asarray(io["in_codes"], jnp.int32)
    out, state = VQGAN(cfg).apply({"params": params}, codes, method=VQGAN.decode_code, capture_intermediates=True)
    inter = state["intermediates"]
    np.testing.assert_array_equal(params["quantize"]["embedding"][io["in_codes"]], nhwc(io["dbg_dec_quant"]))
    np.testing.assert_allclose(inter["post_quant_conv"]["__call__"][0], nhwc(io["dbg_dec_post_quant_conv"]), atol=ATOL)
    dec = inter["decoder"]
    np.testing.assert_allclose(dec["conv_in"]["__call__"][0], nhwc(io["dbg_dec_conv_in"]), atol=ATOL)
    np.testing.assert_allclose(dec["mid"]["__call__"][0], nhwc(io["dbg_dec_mid_out"]), atol=ATOL)
    np.testing.assert_allclose(dec["up_0"]["__call__"][0], nhwc(io["dbg_dec_pre_norm_out"]), atol=ATOL)
    assert out.shape == (2, 32, 32, 3) and out.dtype == jnp.float32
    np.testing.assert_allclose(out, nhwc(io["out_decode_code"]), atol=ATOL)


def test_encode_matches_original(vqgan, io):
    cfg, params = vqgan
    images = jnp.asarray(nhwc(io["in_image"]))
    (codes, quant, loss), state = VQGAN(cfg).apply({"params": params}, images, method=VQGAN.encode_quantized,
                                                   capture_intermediates=True)
    np.testing.assert_array_equal(VQGAN(cfg).apply({"params": params}, images, method=VQGAN.encode), codes)
    inter = state["intermediates"]
    np.testing.assert_allclose(inter["encoder"]["__call__"][0], nhwc(io["dbg_enc_encoder_out"]), atol=ATOL)
    np.testing.assert_allclose(inter["quant_conv"]["__call__"][0], nhwc(io["dbg_enc_quant_conv_out"]), atol=ATOL)
    assert codes.dtype == jnp.int32
    np.testing.assert_array_equal(codes, io["out_encode_indices_bhw"])
    np.testing.assert_array_equal(np.asarray(codes).reshape(-1), io["out_encode_indices_flat"])
    np.testing.assert_allclose(quant, nhwc(io["out_encode_quant"]), atol=ATOL)
    np.testing.assert_allclose(loss, io["out_encode_emb_loss"], rtol=1e-5)


def test_bf16_decode_close_to_fp32(vqgan, io):
    cfg, params = vqgan
    out = VQGAN(cfg, jnp.bfloat16).apply({"params": params}, jnp.asarray(io["in_codes"], jnp.int32),
                                         method=VQGAN.decode_code)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, nhwc(io["out_decode_code"]), atol=0.1)


def test_real_config_param_count():
    cfg = VQGANConfig.f16_1024()
    shapes = jax.eval_shape(lambda: VQGAN(cfg).init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3))))["params"]
    assert sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(shapes)) == 72_141_699


def test_converter_ignores_only_loss_keys(vqgan, state_dict):
    cfg, params = vqgan
    tensors = {**state_dict, "loss.discriminator.main.0.weight": np.zeros((4, 3, 4, 4), np.float32)}
    converted = vqgan_params(tensors, cfg, "edited")
    assert jax.tree_util.tree_structure(converted) == jax.tree_util.tree_structure(params)
    assert all(x.dtype == np.float32 for x in jax.tree_util.tree_leaves(converted))


def test_converter_rejects_missing_key(vqgan, state_dict):
    cfg, _ = vqgan
    tensors = dict(state_dict)
    del tensors["decoder.up.0.block.0.nin_shortcut.weight"]
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): decoder\.up\.0\.block\.0\.nin_shortcut\.weight"):
        vqgan_params(tensors, cfg, "edited")


def test_converter_rejects_unexpected_key(vqgan, state_dict):
    cfg, _ = vqgan
    tensors = {**state_dict, "decoder.up.0.attn.0.q.weight": np.zeros((32, 32, 1, 1), np.float32)}
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): decoder\.up\.0\.attn\.0\.q\.weight"):
        vqgan_params(tensors, cfg, "edited")


def test_converter_rejects_wrong_shape(vqgan, state_dict):
    cfg, _ = vqgan
    tensors = {**state_dict, "decoder.conv_out.weight": np.zeros((4, 32, 3, 3), np.float32)}
    with pytest.raises(CheckpointError) as e:
        vqgan_params(tensors, cfg, "edited")
    assert ("['decoder']['conv_out']['kernel']: shape (3, 3, 32, 4) != expected (3, 3, 32, 3) "
            "(checkpoint key decoder.conv_out.weight, stored shape (4, 32, 3, 3))") in str(e.value)


@pytest.mark.parametrize("missing", ["ckpt", "yaml"])
def test_missing_file(tmp_path, missing):
    paths = {"ckpt": CKPT, "yaml": YAML, missing: str(tmp_path / "absent")}
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "absent")):
        taming_vqgan(paths["ckpt"], paths["yaml"])
