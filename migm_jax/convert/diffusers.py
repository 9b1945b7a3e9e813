"""diffusers `VQModel.save_pretrained` folder (config.json + diffusion_pytorch_model.safetensors) -> VQModel params.

The mapping is 1:1 by name (see migm_jax/models/vqmodel.py); every key must be consumed and every
shape must fit, or CheckpointError names the offenders.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from safetensors.numpy import load_file

from migm_jax.convert.state_dict import CheckpointError, StateDict, check_shapes
from migm_jax.files import read_json
from migm_jax.models.vqmodel import VQModel, VQModelConfig

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


def _resnet(sd: StateDict, prefix: str, with_shortcut: bool) -> dict:
    p = {name: sd.norm(f"{prefix}.{name}") for name in ("norm1", "norm2")}
    p.update({name: sd.conv(f"{prefix}.{name}") for name in ("conv1", "conv2")})
    if with_shortcut:
        p["conv_shortcut"] = sd.conv(f"{prefix}.conv_shortcut")
    return p


def _block(sd: StateDict, prefix: str, layers: int, ch_in: int, ch_out: int, resampler: str | None) -> dict:
    p = {f"resnets_{i}": _resnet(sd, f"{prefix}.resnets.{i}", i == 0 and ch_in != ch_out) for i in range(layers)}
    if resampler is not None:
        p[f"{resampler}_0"] = {"conv": sd.conv(f"{prefix}.{resampler}.0.conv")}
    return p


def _mid(sd: StateDict, prefix: str) -> dict:
    return {f"resnets_{i}": _resnet(sd, f"{prefix}.resnets.{i}", False) for i in range(2)}


def vq_params(tensors: dict[str, np.ndarray], cfg: VQModelConfig, source: str) -> dict[str, Any]:
    """Maps a diffusers VQModel state dict to the Flax params tree of `VQModel(cfg)` and checks it."""
    sd = StateDict(tensors, source)
    chans, n = cfg.block_out_channels, len(cfg.block_out_channels)
    enc: dict[str, Any] = {"conv_in": sd.conv("encoder.conv_in")}
    ch_in = chans[0]
    for i, ch in enumerate(chans):
        enc[f"down_blocks_{i}"] = _block(sd, f"encoder.down_blocks.{i}", cfg.layers_per_block, ch_in, ch,
                                         "downsamplers" if i < n - 1 else None)
        ch_in = ch
    enc.update(mid_block=_mid(sd, "encoder.mid_block"), conv_norm_out=sd.norm("encoder.conv_norm_out"),
               conv_out=sd.conv("encoder.conv_out"))
    rev = chans[::-1]
    dec: dict[str, Any] = {"conv_in": sd.conv("decoder.conv_in"), "mid_block": _mid(sd, "decoder.mid_block")}
    ch_in = rev[0]
    for i, ch in enumerate(rev):
        dec[f"up_blocks_{i}"] = _block(sd, f"decoder.up_blocks.{i}", cfg.layers_per_block + 1, ch_in, ch,
                                       "upsamplers" if i < n - 1 else None)
        ch_in = ch
    dec.update(conv_norm_out=sd.norm("decoder.conv_norm_out"), conv_out=sd.conv("decoder.conv_out"))
    p = {
        "encoder": enc,
        "quant_conv": sd.conv("quant_conv"),
        "quantize": {"embedding": {"embedding": sd.get("quantize.embedding.weight")}},
        "post_quant_conv": sd.conv("post_quant_conv"),
        "decoder": dec,
    }
    sd.finish()
    f = cfg.scale_factor
    images = jax.ShapeDtypeStruct((1, f, f, cfg.in_channels), jnp.float32)
    expected = jax.eval_shape(lambda x: VQModel(cfg).init(jax.random.PRNGKey(0), x), images)["params"]
    check_shapes(p, expected, source, sd.origin_of)
    return p


def diffusers_vq(vqvae_dir: str | os.PathLike) -> tuple[VQModelConfig, dict[str, Any]]:
    """Reads a diffusers VQModel folder -> (config, params).

    `vqvae_dir` is the `vqvae/` folder itself or the model folder that contains it (what DiMOO's
    `VQModel.from_pretrained(ckpt, subfolder="vqvae")` points at).
    """
    folder = os.fspath(vqvae_dir)
    if os.path.isdir(os.path.join(folder, "vqvae")):  # a model folder (its own config.json is not the VQ one)
        folder = os.path.join(folder, "vqvae")
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not os.path.isfile(os.path.join(folder, name)):
            raise FileNotFoundError(f"{os.path.join(folder, name)} not found: pass a diffusers VQModel folder "
                                    f"(with {CONFIG_NAME} and {WEIGHTS_NAME}) or its parent holding vqvae/")
    cfg = VQModelConfig.from_diffusers_config(read_json(os.path.join(folder, CONFIG_NAME), "download it again"))
    weights = os.path.join(folder, WEIGHTS_NAME)
    try:
        tensors = load_file(weights)
    except Exception as e:  # noqa: BLE001  SafetensorError is a bare Exception subclass
        if isinstance(e, OSError):
            raise
        raise CheckpointError(f"{weights} is a damaged safetensors file ({e}); the download may be incomplete: "
                              "download it again") from None
    return cfg, vq_params(tensors, cfg, weights)
