"""Export of a trained (EMA) shortcut: a weights dir for sample.py and a PyTorch state dict (`.pth`)
with the original key names, so the shortcut also loads in the original code (strict load_state_dict).

The `.pth` mappings are the exact inverses of `migm_jax.convert.maskgit.shortcut_params` and
`migm_jax.convert.dimoo.shortcut_params`.
"""

from __future__ import annotations

import collections
import os
import shutil
from typing import Optional

import numpy as np

from migm_jax.convert.torch_file import save_torch_file
from migm_jax.models.shortcut import MaskGITShortcutConfig
from migm_jax.weights import TOKENIZER_DIR, cast_floating, save_weights


def _linear(sd: dict, prefix: str, p: dict) -> None:
    sd[f"{prefix}.weight"] = np.asarray(p["kernel"]).T
    sd[f"{prefix}.bias"] = np.asarray(p["bias"])


def _norm(sd: dict, prefix: str, p: dict) -> None:
    sd[f"{prefix}.weight"] = np.asarray(p["scale"])
    sd[f"{prefix}.bias"] = np.asarray(p["bias"])


def maskgit_shortcut_state_dict(cfg: MaskGITShortcutConfig, params: dict) -> dict[str, np.ndarray]:
    """Flax MaskGITShortcut params -> `maskgit-shortcut.pth` state dict (float32, PyTorch layouts)."""
    sd: dict[str, np.ndarray] = collections.OrderedDict()
    if cfg.bottleneck_ratio != 1:
        for name in ("proj_in", "proj_out", "new_token_proj_in"):
            _linear(sd, name, params[name])
    for i in range(cfg.n_block):
        block = params[f"blocks_{i}"]
        for part in ("cross_attn", "self_attn"):
            _norm(sd, f"blocks.{i}.{part}.norm", block[f"{part}_norm"])
            qkv = block[part]
            mha = f"blocks.{i}.{part}.fn.mha"
            sd[f"{mha}.in_proj_weight"] = np.concatenate([np.asarray(qkv[n]["kernel"]).T for n in ("q", "k", "v")])
            sd[f"{mha}.in_proj_bias"] = np.concatenate([np.asarray(qkv[n]["bias"]) for n in ("q", "k", "v")])
            _linear(sd, f"{mha}.out_proj", qkv["out"])
            _norm(sd, f"blocks.{i}.{part}_ff.norm", block[f"{part}_ff_norm"])
            _linear(sd, f"blocks.{i}.{part}_ff.fn.net.0", block[f"{part}_ff"]["fc1"])
            _linear(sd, f"blocks.{i}.{part}_ff.fn.net.3", block[f"{part}_ff"]["fc2"])
    _norm(sd, "last_layer.0", params["last_ln_a"])
    _linear(sd, "last_layer.1", params["last_dense"])
    _norm(sd, "last_layer.3", params["last_ln_b"])
    if cfg.embed_t:
        _linear(sd, "time_embedder.mlp.0", params["time_embedder"]["mlp_0"])
        _linear(sd, "time_embedder.mlp.2", params["time_embedder"]["mlp_2"])
        _linear(sd, "adaLN_modulation", params["adaLN_modulation"])
    return sd


def dimoo_shortcut_state_dict(cfg, params: dict) -> dict[str, np.ndarray]:
    """Flax DiMOOShortcut params -> `dimoo-shortcut.pth` state dict (no biases inside the LLaDA blocks)."""
    sd: dict[str, np.ndarray] = collections.OrderedDict()
    if cfg.width != cfg.d_model:
        for name in ("proj_in", "proj_out", "new_token_proj_in"):
            _linear(sd, name, params[name])
    for i in range(cfg.n_block):
        for part in ("cross_attn", "self_attn"):
            block = params[f"blocks_{i}"][part]
            for name, p in block.items():
                key = f"blocks.{i}.{part}.{name}.weight"
                sd[key] = np.asarray(p["scale"]) if "scale" in p else np.asarray(p["kernel"]).T
    sd["ln_f.weight"] = np.asarray(params["ln_f"]["scale"])
    if cfg.embed_t:
        _linear(sd, "time_embedder.mlp.0", params["time_embedder"]["mlp_0"])
        _linear(sd, "time_embedder.mlp.2", params["time_embedder"]["mlp_2"])
        _linear(sd, "adaLN_modulation", params["adaLN_modulation"])
    return sd


def export_shortcut(out_dir: str, family, base_configs: dict, base_params: dict, ema: dict,
                    sampling: Optional[dict] = None, dtype: str = "float32", teacher_dir: Optional[str] = None
                    ) -> dict[str, str]:
    """Writes `<out_dir>/weights` (base modules + the shortcut, loadable by sample.py; floating params
    stored as `dtype`; `sampling`: the sampler settings it was trained for, sample.py's defaults) and
    `<out_dir>/shortcut.pth` (float32, the original's key names). Returns {'weights': path, 'pth': path}.
    teacher_dir: the teacher's weights dir; its tokenizer folder (DiMOO) is copied into the export."""
    state_dicts = {"maskgit": maskgit_shortcut_state_dict, "dimoo": dimoo_shortcut_state_dict}
    weights = os.path.join(out_dir, "weights")
    configs = {**base_configs, "shortcut": family.shortcut.to_dict()}
    if sampling:
        configs["sampling"] = dict(sampling)
    save_weights(weights, family.name, configs, cast_floating({**base_params, "shortcut": ema}, dtype))
    tokenizer = os.path.join(teacher_dir, TOKENIZER_DIR) if teacher_dir else None
    if tokenizer and os.path.isdir(tokenizer):
        shutil.copytree(tokenizer, os.path.join(weights, TOKENIZER_DIR), dirs_exist_ok=True)
    pth = os.path.join(out_dir, "shortcut.pth")
    state_dict = state_dicts[family.name](family.shortcut, ema)
    save_torch_file(pth, {k: np.asarray(v, np.float32) for k, v in state_dict.items()})
    return {"weights": weights, "pth": pth}
