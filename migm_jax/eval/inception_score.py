"""Inception Score in float64 numpy, computed as torch-fidelity's `isc` metric does.

IS = exp(E_x KL(p(y|x) || p(y))) on each of `splits` consecutive chunks of the (optionally shuffled)
samples, with p(y|x) the softmax over all 1008 logits and p(y) the chunk's mean of it; the result is the
mean and the population standard deviation (ddof 0) of the per-chunk scores.

torch-fidelity (like the original IS code) scores the fc output without its bias: to reproduce its numbers
from `inception_features`, pass `logits - params["fc"]["bias"]`.
"""

from __future__ import annotations

import numpy as np

SHUFFLE_SEED = 2020  # torch-fidelity's default rng_seed


def inception_score(logits, splits: int = 10, shuffle: bool = True, seed: int = SHUFFLE_SEED) -> tuple[float, float]:
    """logits (N, K) -> (mean, std) of the per-split scores; chunk i holds rows [i N // splits, (i+1) N // splits)
    after the permutation `np.random.RandomState(seed).permutation(N)` when `shuffle` (torch-fidelity's default)."""
    x = np.asarray(logits, np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected logits of shape (N, classes), got {x.shape}")
    n = x.shape[0]
    if not 1 <= splits <= n:
        raise ValueError(f"cannot split {n} samples into {splits} groups; use 1 <= splits <= N")
    if shuffle:
        x = x[np.random.RandomState(seed).permutation(n)]
    shifted = x - x.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    scores = []
    for i in range(splits):
        rows = slice(i * n // splits, (i + 1) * n // splits)
        log_q = np.log(p[rows].mean(axis=0))
        scores.append(np.exp((p[rows] * (log_p[rows] - log_q)).sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))
