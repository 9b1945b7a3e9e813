"""The statistics of an evaluation: feature moments, the Frechet distance, fidelity to the vanilla samples,
and the mean and spread of each metric over seeds.

FID. FD = |mu1 - mu2|^2 + tr(C1) + tr(C2) - 2 tr sqrt(C1 C2), in float64 numpy, with tr sqrt(C1 C2) computed as
the sum of the square roots of the eigenvalues of the symmetric PSD matrix sqrt(C2) C1 sqrt(C2) (same
spectrum as C1 C2), so only symmetric eigenproblems are needed, and only one (eigenvalues alone) once
sqrt(C2) is known.

Moments. One batch of images is reduced where it is (split over all devices of the mesh along its leading
axis): conversion to uint8, the network's preprocessing, the network and the reduction run on each device's
shard, and only the moments (count, feature sum (D,), scatter about the batch mean (D, D)) and the per-image
values come back to the host, where `Accumulator` adds them up in float64. Padded rows of a partial batch are
masked out of the moments.

Fidelity. Per image, against the vanilla sample drawn with the same condition and noise: the fraction of
equal tokens and the mean squared difference of the uint8 images the metric network sees; a row's PSNR is
that of the mean squared difference over all its images (`psnr`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from jax.sharding import Mesh

from migm_jax.eval.features import Extractor, FeatureNet
from migm_jax.sharding import batch_sharding, replicated

ROW_KEYS = ("mode", "steps", "budget", "seed")  # what identifies a result row; its other keys are metrics
PSNR_MAX = 100.0  # dB reported for identical images (MSE 0) and anything closer


class FeatureStats:
    """Running count, sum of x and sum of x x^T (float64) of (b, D) feature batches."""

    def __init__(self, dim: int):
        self.count = 0
        self.sum = np.zeros(dim, np.float64)
        self.outer = np.zeros((dim, dim), np.float64)

    def update(self, features: np.ndarray) -> None:
        """Adds a (b, D) batch."""
        x = np.asarray(features, np.float64)
        if x.ndim != 2 or x.shape[1] != self.sum.shape[0]:
            raise ValueError(f"expected features of shape (b, {self.sum.shape[0]}), got {x.shape}")
        self.count += x.shape[0]
        self.sum += x.sum(axis=0)
        self.outer += x.T @ x

    def add_moments(self, count: int, total: np.ndarray, scatter: np.ndarray) -> None:
        """Adds a batch given as its moments: `count` vectors, their sum (D,) and their scatter about their own
        mean (D, D), sum (x - m)(x - m)^T. The uncentred sum of outer products is rebuilt in float64, so a
        float32 scatter loses no precision to the mean (the batch mean is removed before it is squared)."""
        total, scatter = np.asarray(total, np.float64), np.asarray(scatter, np.float64)
        if total.shape != self.sum.shape or scatter.shape != self.outer.shape:
            raise ValueError(f"expected moments of dimension {self.sum.shape[0]}, got {total.shape}, {scatter.shape}")
        if count:
            self.count += int(count)
            self.sum += total
            self.outer += scatter + np.outer(total, total) / count

    def merge(self, other: "FeatureStats") -> "FeatureStats":
        """The statistics of both feature sets together (a new object)."""
        if other.sum.shape != self.sum.shape:
            raise ValueError(f"cannot merge statistics of dimension {self.sum.shape[0]} and {other.sum.shape[0]}")
        merged = FeatureStats(self.sum.shape[0])
        merged.count = self.count + other.count
        merged.sum = self.sum + other.sum
        merged.outer = self.outer + other.outer
        return merged

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean (D,), unbiased covariance (D, D)), as np.mean(x, 0) and np.cov(x, rowvar=False)."""
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 feature vectors, got {self.count}")
        mean = self.sum / self.count
        cov = (self.outer - self.count * np.outer(mean, mean)) / (self.count - 1)
        return mean, (cov + cov.T) / 2


def psd_sqrt(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD (D, D) matrix; negative rounding eigenvalues count as 0."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray,
                     cov2_sqrt: np.ndarray | None = None) -> float:
    """Frechet distance between N(mu1, cov1) and N(mu2, cov2); mu (D,), cov (D, D). `cov2_sqrt`: psd_sqrt(cov2)
    when already known (a reference compared with many sample sets), so only one eigenvalue problem is left."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    d = mu1.shape[0]
    if mu2.shape != (d,) or cov1.shape != (d, d) or cov2.shape != (d, d):
        raise ValueError(f"shapes do not match: mu {mu1.shape}, {mu2.shape}; cov {cov1.shape}, {cov2.shape}")
    s2 = psd_sqrt(cov2) if cov2_sqrt is None else cov2_sqrt
    inner = s2 @ cov1 @ s2
    eigenvalues = scipy.linalg.eigh((inner + inner.T) / 2, eigvals_only=True, driver="evr")
    tr_sqrt = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * tr_sqrt)


class Reference:
    """Reference statistics (mu (D,), cov (D, D)) with the square root of cov computed once, at the first
    `distance(mu, cov)`: the Frechet distance of another Gaussian to them."""

    def __init__(self, mu: np.ndarray, cov: np.ndarray):
        self.mu, self.cov = np.asarray(mu, np.float64), np.asarray(cov, np.float64)

    @functools.cached_property
    def cov_sqrt(self) -> np.ndarray:
        return psd_sqrt(self.cov)

    def distance(self, mu: np.ndarray, cov: np.ndarray) -> float:
        return frechet_distance(mu, cov, self.mu, self.cov, self.cov_sqrt)


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between the Gaussian fits of two feature sets a (n, D) and b (m, D)."""
    stats = []
    for x in (a, b):
        s = FeatureStats(np.shape(x)[1])
        s.update(x)
        stats.append(s.mean_cov())
    return frechet_distance(*stats[0], *stats[1])


def check_batch_size(batch_size: int, devices: int) -> None:
    """ValueError unless the batch splits evenly over the devices."""
    if batch_size % devices:
        raise ValueError(f"--batch-size {batch_size} is not divisible by the {devices} devices the batch is split "
                         f"over; use a multiple of {devices}")


def pad_rows(x: np.ndarray, size: int) -> np.ndarray:
    """(n, ...) -> (size, ...), repeating the last row (n <= size)."""
    return np.pad(x, [(0, size - len(x))] + [(0, 0)] * (x.ndim - 1), mode="edge")


def as_uint8(net: FeatureNet, images: jax.Array) -> jax.Array:
    """Images as the metric network sees them: uint8 as they are, decoded floats through `net.to_uint8`."""
    return images if images.dtype == jnp.uint8 else net.to_uint8(images)


@functools.lru_cache(maxsize=None)
def programs(net: FeatureNet, mesh: Mesh):
    """(prepare, moments), jitted once per net and mesh:

    prepare(images (b, H, W, 3) uint8, or decoded float in ~[-1, 1]) -> the network input, batch-sharded;
    moments(params, x, labels (b,), valid (b,) bool) -> ({count (), sum (D,), scatter (D, D)} replicated,
    per-image values (b, ...) batch-sharded).
    """
    rep, data = replicated(mesh), batch_sharding(mesh)

    def prepare(images):
        return net.prepare(as_uint8(net, images))

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


@functools.lru_cache(maxsize=None)
def fidelity_program(net: FeatureNet, mesh: Mesh):
    """fn(codes (b, ...) int, vanilla codes, images (b, H, W, 3), vanilla images) -> (b, 2) float32 per image:
    [fraction of equal codes, mean squared difference of the uint8 images (`as_uint8`)], batch-sharded."""
    data = batch_sharding(mesh)

    def fidelity(codes, ref_codes, images, ref_images):
        b = codes.shape[0]
        equal = jnp.mean((codes == ref_codes).reshape(b, -1).astype(jnp.float32), axis=1)
        diff = as_uint8(net, images).astype(jnp.float32) - as_uint8(net, ref_images).astype(jnp.float32)
        return jnp.stack([equal, jnp.mean((diff * diff).reshape(b, -1), axis=1)], axis=1)

    return jax.jit(fidelity, in_shardings=(data,) * 4, out_shardings=data)


def psnr(mse: np.ndarray) -> float:
    """PSNR in dB of uint8 images with per-image mean squared differences `mse` (n,): 10 log10(255^2 / mean),
    at most PSNR_MAX (identical images)."""
    mean = float(np.mean(mse))
    return PSNR_MAX if mean <= 255.0 ** 2 * 10 ** (-PSNR_MAX / 10) else float(10 * np.log10(255.0 ** 2 / mean))


def fidelity_metrics(values: np.ndarray) -> dict:
    """A row's fidelity columns from the per-image [equal tokens, mse] values (n, 2)."""
    return {"equal_tokens": float(np.mean(values[:, 0])), "psnr": psnr(values[:, 1])}


def summary(results: list[dict]) -> list[dict]:
    """Mean and std over seeds per (mode, steps, budget) of every metric the rows hold, in order of first appearance.

    std is the sample standard deviation (ddof=1), 0 for a single seed.
    """
    groups: dict[tuple, list[dict]] = {}
    for row in results:
        groups.setdefault((row["mode"], row["steps"], row["budget"]), []).append(row)
    out = []
    for (mode, steps, budget), rows in groups.items():
        entry = {"mode": mode, "steps": steps, "budget": budget, "seeds": len(rows)}
        for name in (k for k in rows[0] if k not in ROW_KEYS):
            values = np.array([r[name] for r in rows], np.float64)
            entry[f"{name}_mean"] = float(values.mean())
            entry[f"{name}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out.append(entry)
    return out
