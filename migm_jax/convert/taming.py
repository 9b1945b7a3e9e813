"""Taming VQGAN converter: Lightning `last.ckpt` + `model.yaml` -> (VQGANConfig, Flax params).

The config comes from `model.params.{embed_dim, n_embed, ddconfig}` of the yaml; the weights from the
checkpoint's `state_dict`, where `loss.*` (discriminator / LPIPS) is ignored as in the original
`strict=False` load. Every other key must be consumed and every shape must fit, or CheckpointError
names them.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import yaml

from migm_jax.convert.state_dict import CheckpointError, StateDict, check_shapes
from migm_jax.convert.torch_file import load_torch_file
from migm_jax.models.vqgan import VQGAN, VQGANConfig

IGNORED_PREFIXES = ("loss.",)
DDCONFIG_FIELDS = ("z_channels", "ch", "ch_mult", "num_res_blocks", "attn_resolutions", "resolution", "in_channels",
                   "out_ch")


def config_from_yaml(yaml_path: str | os.PathLike) -> VQGANConfig:
    """Reads `model.params.{embed_dim, n_embed, ddconfig}` of a taming `model.yaml`."""
    try:
        with open(yaml_path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        problem = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{yaml_path} is not a readable YAML file ({problem}); use the model.yaml that ships "
                              "with last.ckpt") from None
    try:
        params = doc["model"]["params"]
        dd = params["ddconfig"]
        values = {"embed_dim": params["embed_dim"], "n_embed": params["n_embed"], **{k: dd[k] for k in DDCONFIG_FIELDS}}
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{yaml_path}: no model.params.{{embed_dim, n_embed, ddconfig}} entry {e}; "
                              "is this a taming VQGAN model.yaml?") from None
    return VQGANConfig.from_dict(values)


def _resnet(sd: StateDict, prefix: str, nin_shortcut: bool) -> dict:
    p = {"norm1": sd.norm(f"{prefix}.norm1"), "conv1": sd.conv(f"{prefix}.conv1"),
         "norm2": sd.norm(f"{prefix}.norm2"), "conv2": sd.conv(f"{prefix}.conv2")}
    if nin_shortcut:
        p["nin_shortcut"] = sd.conv(f"{prefix}.nin_shortcut")
    return p


def _attn(sd: StateDict, prefix: str) -> dict:
    return {"norm": sd.norm(f"{prefix}.norm"), **{n: sd.conv(f"{prefix}.{n}") for n in ("q", "k", "v", "proj_out")}}


def _mid(sd: StateDict, prefix: str) -> dict:
    return {"block_1": _resnet(sd, f"{prefix}.block_1", False), "attn_1": _attn(sd, f"{prefix}.attn_1"),
            "block_2": _resnet(sd, f"{prefix}.block_2", False)}


def _level(sd: StateDict, prefix: str, c_in: int, c_out: int, n_blocks: int, attn: bool, resample: str | None) -> dict:
    """`encoder.down.i` / `decoder.up.i`: block.j [+ attn.j] [+ downsample|upsample.conv]."""
    p: dict[str, Any] = {}
    for j in range(n_blocks):
        p[f"block_{j}"] = _resnet(sd, f"{prefix}.block.{j}", nin_shortcut=j == 0 and c_in != c_out)
        if attn:
            p[f"attn_{j}"] = _attn(sd, f"{prefix}.attn.{j}")
    if resample:
        p[resample] = {"conv": sd.conv(f"{prefix}.{resample}.conv")}
    return p


def vqgan_params(tensors: dict, cfg: VQGANConfig, source: str) -> dict:
    """Maps a taming VQModel state dict 1:1 to the Flax params tree, checks it, returns float32 numpy arrays."""
    sd = StateDict(tensors, source, ignore_prefixes=IGNORED_PREFIXES)
    widths = [cfg.ch * m for m in cfg.ch_mult]
    last = len(widths) - 1

    enc: dict[str, Any] = {"conv_in": sd.conv("encoder.conv_in")}
    res, c_in = cfg.resolution, cfg.ch
    for i, c_out in enumerate(widths):
        enc[f"down_{i}"] = _level(sd, f"encoder.down.{i}", c_in, c_out, cfg.num_res_blocks,
                                  res in cfg.attn_resolutions, None if i == last else "downsample")
        res, c_in = res // 2, c_out
    enc.update(mid=_mid(sd, "encoder.mid"), norm_out=sd.norm("encoder.norm_out"),
               conv_out=sd.conv("encoder.conv_out"))

    dec: dict[str, Any] = {"conv_in": sd.conv("decoder.conv_in"), "mid": _mid(sd, "decoder.mid")}
    res, c_in = cfg.resolution // cfg.downsample_factor, widths[-1]
    for i in reversed(range(len(widths))):
        dec[f"up_{i}"] = _level(sd, f"decoder.up.{i}", c_in, widths[i], cfg.num_res_blocks + 1,
                                res in cfg.attn_resolutions, "upsample" if i else None)
        res, c_in = res * 2, widths[i]
    dec.update(norm_out=sd.norm("decoder.norm_out"), conv_out=sd.conv("decoder.conv_out"))

    p = {
        "encoder": enc,
        "quant_conv": sd.conv("quant_conv"),
        "quantize": {"embedding": sd.get("quantize.embedding.weight")},
        "post_quant_conv": sd.conv("post_quant_conv"),
        "decoder": dec,
    }
    sd.finish()
    size = 2 * cfg.downsample_factor
    expected = jax.eval_shape(lambda: VQGAN(cfg).init(jax.random.PRNGKey(0),
                                                      jnp.zeros((1, size, size, cfg.in_channels))))["params"]
    check_shapes(p, expected, source, sd.origin_of)
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), p)


def check_vqgan_files(ckpt_path: str | os.PathLike, yaml_path: str | os.PathLike) -> None:
    """FileNotFoundError (one line) unless both files are there."""
    if not os.path.isfile(yaml_path):
        raise FileNotFoundError(f"VQGAN config not found: {yaml_path} (pass the model.yaml that ships with last.ckpt)")
    if not os.path.isfile(ckpt_path):
        raise FileNotFoundError(f"VQGAN checkpoint not found: {ckpt_path} (download the MaskGIT VQGAN last.ckpt "
                                "and pass its path)")


def taming_vqgan(ckpt_path: str | os.PathLike, yaml_path: str | os.PathLike) -> tuple[VQGANConfig, dict]:
    """Reads a taming VQGAN folder's `last.ckpt` and `model.yaml` -> (config, params)."""
    check_vqgan_files(ckpt_path, yaml_path)
    cfg = config_from_yaml(yaml_path)
    obj = load_torch_file(ckpt_path)
    tensors = obj.get("state_dict") if isinstance(obj, dict) else None
    if not isinstance(tensors, dict):
        raise CheckpointError(f"{ckpt_path}: expected a Lightning checkpoint with a 'state_dict' entry")
    return cfg, vqgan_params(tensors, cfg, str(ckpt_path))
