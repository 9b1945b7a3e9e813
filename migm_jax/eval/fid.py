"""Frechet distance between Gaussian fits of two feature sets (the FID formula), in float64 numpy.

FD = |mu1 - mu2|^2 + tr(C1) + tr(C2) - 2 tr sqrt(C1 C2), with tr sqrt(C1 C2) computed as the sum of the
square roots of the eigenvalues of the symmetric PSD matrix sqrt(C2) C1 sqrt(C2) (same spectrum as C1 C2),
so only symmetric eigenproblems are needed, and only one (eigenvalues alone) once sqrt(C2) is known.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.linalg


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
