"""A converted-weights directory: `config.json` (model family + module configs) and `params/` (orbax).

Written by `convert_weights.py` and by training export, read by `sample.py`.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

import jax
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


def cast_floating(params: Any, dtype: str) -> Any:
    """`params` (a tree of arrays) as numpy arrays, every floating one in `dtype` (e.g. 'bfloat16':
    half the bytes of float32); integer arrays unchanged."""
    import jax.numpy as jnp
    import numpy as np

    target = jnp.dtype(dtype)
    return jax.tree.map(lambda x: np.asarray(x).astype(target) if jnp.issubdtype(x.dtype, jnp.floating)
                        else np.asarray(x), params)


def as_float32(params: Any) -> Any:
    """`params` with every floating array in float32 (for weights stored in bfloat16 / float16)."""
    import jax.numpy as jnp

    return jax.tree.map(lambda x: x.astype(jnp.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x, params)


def read_config(weights_dir: str | os.PathLike) -> tuple[str, dict[str, dict]]:
    """Returns (family, configs) without touching the params; one-line error if the directory is not a weights dir."""
    path = os.path.join(os.fspath(weights_dir), CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no converted weights at {weights_dir} ({CONFIG_FILE} missing); run convert_weights.py first")
    with open(path) as f:
        meta = json.load(f)
    if not isinstance(meta, dict) or "family" not in meta or "configs" not in meta:
        raise ValueError(f"{path} is not a weights config (needs 'family' and 'configs'); re-run convert_weights.py")
    return meta["family"], meta["configs"]


def stored_target(weights_dir: str | os.PathLike, shardings=None) -> Any:
    """Tree of jax.ShapeDtypeStruct with the stored shapes and dtypes, placed by `shardings` (a function
    of the metadata tree returning a sharding tree; default: everything on the first local device)."""
    path = os.path.join(os.path.abspath(os.fspath(weights_dir)), PARAMS_DIR)
    with ocp.StandardCheckpointer() as ckpt:
        meta = ckpt.metadata(path).item_metadata.tree
    if shardings is None:
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        placed = jax.tree_util.tree_map(lambda m: device, meta)
    else:
        placed = shardings(meta)
    return jax.tree_util.tree_map(lambda m, s: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=s), meta, placed)


def load_weights(weights_dir: str | os.PathLike, target: Optional[Any] = None) -> tuple[str, dict[str, dict], dict]:
    """Returns (family, configs, params). `target`: optional tree of jax.ShapeDtypeStruct with shardings
    (see `stored_target`) so that each device only reads its slice; default: the first local device,
    whatever devices the weights were written from."""
    family, configs = read_config(weights_dir)
    path = os.path.join(os.path.abspath(os.fspath(weights_dir)), PARAMS_DIR)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"params missing in {weights_dir}; re-run convert_weights.py")
    with ocp.StandardCheckpointer() as ckpt:
        params = ckpt.restore(path, target if target is not None else stored_target(weights_dir))
    return family, configs, params
