"""Parity of the diffusers VQModel port and the DiMOO image helpers with the fp32 fixture (dimoo_vqvae/)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load_file

from conftest import fixture_path, load_npz
from migm_jax.convert.diffusers import diffusers_vq, vq_params
from migm_jax.convert.state_dict import CheckpointError
from migm_jax.models.vqmodel import VectorQuantizer, VQModel, VQModelConfig
from migm_jax.sampling.dimoo_image import codes_to_uint8, image_tokens_with_breaks, preprocess_uint8

ATOL = 1e-4
# Ids hard-coded by the original decode_vq_to_image / encode_img_with_breaks.
DIMOO_REAL_IDS = {"text_vocab_size": 126356, "newline_id": 126084, "boi_id": 126349, "eoi_id": 126350}


@pytest.fixture(scope="module")
def vq():
    cfg, params = diffusers_vq(fixture_path("dimoo_vqvae"))
    return VQModel(cfg), params


@pytest.fixture(scope="module")
def io():
    return load_npz("dimoo_vqvae", "io.npz")


def nchw(x) -> np.ndarray:
    return np.asarray(x).transpose(0, 3, 1, 2)


def test_config_from_fixture_and_presets():
    cfg, _ = diffusers_vq(fixture_path("dimoo_vqvae", "vqvae"))  # the vqvae folder itself also works
    assert cfg == VQModelConfig(block_out_channels=(16, 32, 32), layers_per_block=2, latent_channels=16,
                                norm_num_groups=16, num_vq_embeddings=128)
    assert cfg.scale_factor == 4 and cfg.embed_dim == 16
    assert VQModelConfig.from_dict(cfg.to_dict()) == cfg
    big = VQModelConfig.amused_f16()
    assert big.scale_factor == 16 and big.embed_dim == 64 and big.num_vq_embeddings == 8192
    with pytest.raises(ValueError, match="norm_type"):
        VQModelConfig(norm_type="spatial")
    with pytest.raises(ValueError, match="act_fn"):
        VQModelConfig.from_diffusers_config({"block_out_channels": [16], "act_fn": "gelu"})


def test_decode_matches_diffusers(vq, io):
    model, params = vq
    out, state = model.apply({"params": params}, jnp.asarray(io["in_codes"], jnp.int32),
                             method=VQModel.decode_code, capture_intermediates=True)
    assert out.shape == (2, 32, 32, 3) and out.dtype == jnp.float32
    it = state["intermediates"]
    np.testing.assert_allclose(nchw(it["quantize"]["embedding"]["__call__"][0]), io["dbg_dec_quant"], atol=ATOL)
    np.testing.assert_allclose(nchw(it["post_quant_conv"]["__call__"][0]), io["dbg_dec_post_quant_conv"], atol=ATOL)
    dec = it["decoder"]
    np.testing.assert_allclose(nchw(dec["conv_in"]["__call__"][0]), io["dbg_dec_conv_in"], atol=ATOL)
    np.testing.assert_allclose(nchw(dec["mid_block"]["__call__"][0]), io["dbg_dec_mid_block_out"], atol=ATOL)
    np.testing.assert_allclose(nchw(dec["up_blocks_2"]["__call__"][0]), io["dbg_dec_pre_norm_out"], atol=ATOL)
    np.testing.assert_allclose(nchw(out), io["out_decode_sample"], atol=ATOL)


def test_decode_vq_to_image_png_exact(vq, io):
    model, params = vq
    ids = io["in_decode_vq_to_image_tokens"]
    codes = (ids - DIMOO_REAL_IDS["text_vocab_size"]).reshape(1, 8, 8)
    images = model.apply({"params": params}, jnp.asarray(codes, jnp.int32), method=VQModel.decode_code)
    np.testing.assert_allclose(nchw(jnp.clip(images, 0, 1)), io["out_decode_vq_to_image_recon"], atol=ATOL)
    pixels = np.asarray(codes_to_uint8(images))
    assert pixels.dtype == np.uint8 and pixels.shape == (1, 32, 32, 3)
    np.testing.assert_array_equal(pixels[0], io["out_decode_vq_to_image_uint8"])
    png = np.asarray(Image.open(fixture_path("dimoo_vqvae", "decode_vq_to_image.png")).convert("RGB"))
    np.testing.assert_array_equal(pixels[0], png)


def test_encode_latents_and_tokens_with_breaks(vq, io):
    model, params = vq
    x = preprocess_uint8(io["in_encode_image_uint8"], vae_scale_factor=4)
    np.testing.assert_array_equal(nchw(x), io["dbg_encode_preprocessed"])
    latents = model.apply({"params": params}, jnp.asarray(x), method=VQModel.encode_latents)
    np.testing.assert_allclose(nchw(latents), io["dbg_encode_latents"], atol=ATOL)
    codes = model.apply({"params": params}, jnp.asarray(x), method=VQModel.encode)
    assert codes.shape == (1, 8, 8) and codes.dtype == jnp.int32
    ids = image_tokens_with_breaks(codes[0], **DIMOO_REAL_IDS)
    np.testing.assert_array_equal(np.asarray(ids), io["out_encode_tokens_with_breaks"])


def test_nearest_code_takes_first_index_on_ties(vq):
    _, params = vq
    table = np.array(params["quantize"]["embedding"]["embedding"])
    table[9] = table[5]  # codes 5 and 9 identical: torch argmin over cdist returns 5
    q = VectorQuantizer(*table.shape)
    z = jnp.asarray(table[[5, 9, 2]]).reshape(1, 1, 3, -1)
    got = q.apply({"params": {"embedding": {"embedding": table}}}, z, method=VectorQuantizer.nearest)
    np.testing.assert_array_equal(got, [[[5, 5, 2]]])


def test_preprocess_resizes_to_multiple_like_diffusers():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (37, 35, 3), dtype=np.uint8)
    x = preprocess_uint8(img, vae_scale_factor=16)
    want = np.asarray(Image.fromarray(img).resize((32, 32), resample=Image.Resampling.LANCZOS), np.float32) / 255
    assert x.shape == (1, 32, 32, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0], want)


def test_tokens_with_breaks_layout():
    ids = np.asarray(image_tokens_with_breaks(np.arange(6).reshape(2, 3), 100, -1, -2, -3))
    np.testing.assert_array_equal(ids, [-2, 100, 101, 102, -1, 103, 104, 105, -1, -3])


@pytest.fixture(scope="module")
def raw():
    folder = fixture_path("dimoo_vqvae", "vqvae")
    return load_file(os.path.join(folder, "diffusion_pytorch_model.safetensors"))


def test_converter_missing_key(raw):
    cfg = VQModelConfig(block_out_channels=(16, 32, 32), latent_channels=16, norm_num_groups=16, num_vq_embeddings=128)
    tensors = dict(raw)
    del tensors["decoder.up_blocks.1.resnets.2.norm1.weight"]
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): decoder\.up_blocks\.1\.resnets\.2\.norm1\.weight"):
        vq_params(tensors, cfg, "test")


def test_converter_extra_key(raw):
    cfg = VQModelConfig(block_out_channels=(16, 32, 32), latent_channels=16, norm_num_groups=16, num_vq_embeddings=128)
    tensors = dict(raw, **{"decoder.mid_block.attentions.0.to_q.weight": np.zeros((32, 32), np.float32)})
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): decoder\.mid_block\.attentions\.0\.to_q"):
        vq_params(tensors, cfg, "test")


def test_converter_wrong_shape(raw):
    cfg = VQModelConfig(block_out_channels=(16, 32, 32), latent_channels=16, norm_num_groups=16, num_vq_embeddings=64)
    with pytest.raises(CheckpointError) as e:
        vq_params(dict(raw), cfg, "test")
    assert ("['quantize']['embedding']['embedding']: shape (128, 16) != expected (64, 16) "
            "(checkpoint key quantize.embedding.weight, stored shape (128, 16))") in str(e.value)


def test_converter_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        diffusers_vq(tmp_path / "nope")
    (tmp_path / "vqvae").mkdir()
    (tmp_path / "vqvae" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"vqvae/diffusion_pytorch_model\.safetensors"):
        diffusers_vq(tmp_path)


def test_mid_block_attention_not_ported():
    cfg = VQModelConfig(block_out_channels=(16,), latent_channels=4, norm_num_groups=4, num_vq_embeddings=8,
                        mid_block_add_attention=True)
    with pytest.raises(NotImplementedError, match="mid_block_add_attention"):
        jax.eval_shape(lambda x: VQModel(cfg).init(jax.random.PRNGKey(0), x),
                       jax.ShapeDtypeStruct((1, 4, 4, 3), jnp.float32))
