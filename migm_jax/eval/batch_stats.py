"""One batch of images -> its feature moments, computed where the images are (sharded over the mesh).

The batch is split over all devices of the mesh along its leading axis; conversion to uint8, the network's
preprocessing, the network and the reduction run on each device's shard, and only the moments (count,
feature sum (D,), scatter about the batch mean (D, D)) and the per-image values come back to the host,
where `Accumulator` adds them up in float64. Padded rows of a partial batch are masked out of the moments.
With several processes the mesh spans them all: each process computes its own devices' rows, the moments
and per-image values are reduced over every device, and every process gets the same result.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from migm_jax.eval.features import Extractor, FeatureNet
from migm_jax.eval.fid import FeatureStats
from migm_jax.sharding import batch_sharding, replicated


def check_batch_size(batch_size: int, devices: int) -> None:
    """ValueError unless the batch splits evenly over the devices."""
    if batch_size % devices:
        raise ValueError(f"--batch-size {batch_size} is not divisible by the {devices} devices the batch is split "
                         f"over; use a multiple of {devices}")


def pad_rows(x: np.ndarray, size: int) -> np.ndarray:
    """(n, ...) -> (size, ...), repeating the last row (n <= size)."""
    return np.pad(x, [(0, size - len(x))] + [(0, 0)] * (x.ndim - 1), mode="edge")


@functools.lru_cache(maxsize=None)
def programs(net: FeatureNet, mesh: Mesh):
    """(prepare, moments), jitted once per net and mesh:

    prepare(images (b, H, W, 3) uint8, or decoded float in ~[-1, 1]) -> the network input, batch-sharded;
    moments(params, x, labels (b,), valid (b,) bool) -> ({count (), sum (D,), scatter (D, D)}, per-image
    values (b, ...)), both replicated (so each process can read them).
    """
    rep, data = replicated(mesh), batch_sharding(mesh)

    def prepare(images):
        return net.prepare(images if images.dtype == jnp.uint8 else net.to_uint8(images))

    def moments(params, x, labels, valid):
        features, per_image = net.apply(params, x, labels)
        weight = valid.astype(jnp.float32)[:, None]
        count = jnp.sum(valid.astype(jnp.int32))
        total = jnp.sum(features * weight, axis=0)
        centred = (features - total / jnp.maximum(count, 1)) * weight
        scatter = jnp.einsum("bi,bj->ij", centred, centred, precision=jax.lax.Precision.HIGHEST)
        return {"count": count, "sum": total, "scatter": scatter}, per_image

    return (jax.jit(prepare, in_shardings=data, out_shardings=data),
            jax.jit(moments, in_shardings=(rep, data, data, data), out_shardings=(rep, rep)))


def global_batch(x, sharding):
    """A host array holding the whole batch (the same on every process) -> one array laid out by `sharding`,
    each process filling its own devices' rows; a device array is returned as it is."""
    if isinstance(x, jax.Array):
        return x
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def batch_moments(extractor: Extractor, mesh: Mesh, images, labels: np.ndarray, count: int) -> tuple[dict, np.ndarray]:
    """images (b, H, W, 3) (host or device, uint8 or decoded float), labels (b,) int, of which the first `count`
    rows are real -> (moments of those rows as numpy, their per-image values (count, ...)). With several
    processes each passes the same batch (host arrays of equal values, or one array over the mesh)."""
    prepare, moments = programs(extractor.net, mesh)
    data = batch_sharding(mesh)
    valid = np.arange(len(labels)) < count
    stats, per_image = moments(extractor.params, prepare(global_batch(images, data)),
                               global_batch(np.asarray(labels, np.int32), data), global_batch(valid, data))
    return jax.device_get(stats), np.asarray(per_image)[:count]


def add_batch(stats: FeatureStats, moments: dict) -> None:
    """Adds one batch's moments (as `batch_moments` returns them) to `stats`."""
    stats.add_moments(int(moments["count"]), moments["sum"], moments["scatter"])


class Accumulator:
    """float64 moments and the per-image values of every batch added so far."""

    def __init__(self, dim: int):
        self.stats = FeatureStats(dim)
        self.per_image: list[np.ndarray] = []

    def add(self, moments: dict, per_image: np.ndarray) -> None:
        add_batch(self.stats, moments)
        self.per_image.append(per_image)

    def values(self) -> np.ndarray:
        """All per-image values (n, ...)."""
        return np.concatenate(self.per_image)


def on_mesh(extractor: Extractor, mesh: Mesh) -> Extractor:
    """The extractor with its params replicated on every device of the mesh."""
    return Extractor(extractor.net, jax.device_put(extractor.params, replicated(mesh)))
