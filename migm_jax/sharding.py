"""Device meshes and shardings (named axes 'data', 'fsdp', 'tensor').

The same code runs on one CPU, 8 fake CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=8),
one GPU or a TPU pod slice; on several hosts call `jax.distributed.initialize()` first.
"""

from __future__ import annotations

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
