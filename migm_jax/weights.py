"""A converted-weights directory: `config.json` (model family + module configs) and `params/` (orbax).

Written by `convert_weights.py` and by training export, read by `sample.py`.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

import orbax.checkpoint as ocp

CONFIG_FILE = "config.json"
PARAMS_DIR = "params"


def save_weights(out_dir: str | os.PathLike, family: str, configs: dict[str, dict], params: dict[str, Any]) -> None:
    """Writes `configs` (JSON-able dicts, one per module) and the params tree (arrays keep their dtype).

    The params write is atomic (orbax finalises a temporary directory); an existing directory is replaced.
    """
    out_dir = os.path.abspath(os.fspath(out_dir))
    os.makedirs(out_dir, exist_ok=True)
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(os.path.join(out_dir, PARAMS_DIR), params, force=True)
        ckpt.wait_until_finished()
    with open(os.path.join(out_dir, CONFIG_FILE), "w") as f:
        json.dump({"family": family, "configs": configs}, f, indent=2)


def read_config(weights_dir: str | os.PathLike) -> tuple[str, dict[str, dict]]:
    """Returns (family, configs) without touching the params; one-line error if the directory is not a weights dir."""
    path = os.path.join(os.fspath(weights_dir), CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no converted weights at {weights_dir} ({CONFIG_FILE} missing); run convert_weights.py first")
    with open(path) as f:
        meta = json.load(f)
    return meta["family"], meta["configs"]


def load_weights(weights_dir: str | os.PathLike, target: Optional[Any] = None) -> tuple[str, dict[str, dict], dict]:
    """Returns (family, configs, params). `target`: optional tree of jax.ShapeDtypeStruct with shardings
    so that each device only reads its slice."""
    family, configs = read_config(weights_dir)
    path = os.path.join(os.path.abspath(os.fspath(weights_dir)), PARAMS_DIR)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"params missing in {weights_dir}; re-run convert_weights.py")
    with ocp.StandardCheckpointer() as ckpt:
        params = ckpt.restore(path, target) if target is not None else ckpt.restore(path)
    return family, configs, params
