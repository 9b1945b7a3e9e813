"""Device meshes and shardings (named axes 'data', 'fsdp', 'tensor').

The same code runs on one CPU, 8 fake CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=8),
one GPU or a TPU pod slice; with several processes call `migm_jax.launch.initialize` first.
"""

from __future__ import annotations

import re

import numpy as np
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXES = ("data", "fsdp", "tensor")


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1, devices=None) -> Mesh:
    """A (data, fsdp, tensor) mesh over `devices` (default: all); data=-1 takes what is left."""
    devices = np.asarray(jax.devices() if devices is None else devices)
    if data == -1:
        if devices.size % (fsdp * tensor):
            raise ValueError(f"{devices.size} devices cannot be split into fsdp={fsdp} x tensor={tensor}")
        data = devices.size // (fsdp * tensor)
    if data * fsdp * tensor != devices.size:
        raise ValueError(f"mesh data={data} x fsdp={fsdp} x tensor={tensor} != {devices.size} devices")
    return Mesh(devices.reshape(data, fsdp, tensor), AXES)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the data and fsdp axes, the rest replicated."""
    return NamedSharding(mesh, P(("data", "fsdp")))


# Partition rules (MaxText style): (regex on the '/'-joined param path, PartitionSpec); the first match wins,
# unmatched params are replicated. Linear kernels are (in, out): column-parallel layers split `out` over
# 'tensor', row-parallel layers split `in`, and the other dimension is split over 'fsdp'.
LLADA_RULES: tuple[tuple[str, P], ...] = (
    (r"wte/embedding$", P("tensor", "fsdp")),                           # (vocab, d)
    (r"(q_proj|k_proj|v_proj|ff_proj|up_proj)/kernel$", P("fsdp", "tensor")),  # (d, out): column parallel
    (r"(attn_out|blocks_\d+/(\w+/)?ff_out)/kernel$", P("tensor", "fsdp")),     # (in, d): row parallel
    (r"transformer/ff_out/kernel$", P("fsdp", "tensor")),               # head (d, vocab)
    (r"(proj_in|new_token_proj_in)/kernel$", P("fsdp", "tensor")),      # shortcut (d, width)
    (r"proj_out/kernel$", P("tensor", "fsdp")),                         # shortcut (width, d)
)


def _path_str(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def spec_for(path: str, shape: tuple[int, ...], mesh: Mesh, rules=LLADA_RULES) -> P:
    """PartitionSpec of the param at `path` ('a/b/kernel') with `shape`: the first matching rule, with any
    dimension that the mesh axes do not divide evenly (or a rule longer than the shape) left unsplit."""
    for pattern, spec in rules:
        if re.search(pattern, path):
            if len(spec) > len(shape):
                return P()
            axes = []
            for dim, ax in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
                names = () if ax is None else (ax if isinstance(ax, tuple) else (ax,))
                size = int(np.prod([mesh.shape[a] for a in names])) if names else 1
                axes.append(ax if names and dim % size == 0 and size > 1 else None)
            return P(*axes)
    return P()


def param_shardings(shapes_tree, mesh: Mesh, rules=LLADA_RULES):
    """A NamedSharding per leaf of a params tree (leaves: arrays or jax.ShapeDtypeStruct), by `rules`.

    Usable as `shardings=` of `migm_jax.convert.dimoo.llada` with `llada_abstract_params(cfg)`."""
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: NamedSharding(mesh, spec_for(_path_str(path), tuple(leaf.shape), mesh, rules)), shapes_tree)


def shard_params(params, mesh: Mesh, rules=LLADA_RULES):
    """Places every param on `mesh` by `rules` (see `param_shardings`)."""
    return jax.device_put(params, param_shardings(params, mesh, rules))
