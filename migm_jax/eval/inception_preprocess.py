"""Inception input preprocessing as each reference package does it: uint8 RGB of any size -> 299x299 float32.

- "pytorch-fid": x / 255, bilinear resize with half-pixel centres (PyTorch's `interpolate`, align_corners=False,
  no antialiasing: source = (i + 0.5) * in/out - 0.5, clamped at 0), then 2x - 1.
- "torch-fidelity": bilinear resize of the 0..255 values the way TF1's `resize_bilinear` without half-pixel
  centres does it (source = i * in/out, neighbours floor and floor + 1 clamped to the edge), then (x - 128) / 128.

Both resizes are separable, so each is two gathers per axis plus a weighted sum; the tap indices and weights
are computed in numpy at trace time and rounded to float32 where the references round them.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

SIZE = 299
FLAVORS = ("pytorch-fid", "torch-fidelity")


def check_flavor(flavor: str) -> str:
    """`flavor` itself; ValueError naming the known ones otherwise."""
    if flavor not in FLAVORS:
        raise ValueError(f"unknown Inception flavor {flavor!r}; use one of {', '.join(FLAVORS)}")
    return flavor


def half_pixel_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lo, hi, frac), each (n_out,): output i blends input lo and hi with weight frac on hi (PyTorch bilinear).

    The source coordinate scale * (i + 0.5) - 0.5 is rounded to float32 once, as the fused multiply-add of
    PyTorch's CPU kernel does (float64 holds the product and difference exactly)."""
    scale = np.float32(n_in) / np.float32(n_out)
    src = (np.float64(scale) * (np.arange(n_out) + 0.5) - 0.5).astype(np.float32)
    src = np.maximum(src, 0)
    lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    frac = np.clip(src - lo.astype(np.float32), 0, 1).astype(np.float32)
    return lo, lo + (lo < n_in - 1), frac


def tf1_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lo, hi, frac), each (n_out,), for TF1-style bilinear resizing (no half-pixel offset)."""
    src = np.arange(n_out, dtype=np.float32) * np.float32(n_in / n_out)
    lo = src.astype(np.int64)
    return lo, np.minimum(lo + 1, n_in - 1), src - lo.astype(np.float32)


def _corners(x: jax.Array, rows, cols) -> tuple[jax.Array, ...]:
    """x[:, rows[k], cols[l]] for the four (lo, hi) combinations: each (b, len(rows), len(cols), C)."""
    top, bottom = jnp.take(x, rows[0], axis=1), jnp.take(x, rows[1], axis=1)
    return tuple(jnp.take(r, c, axis=2) for r in (top, bottom) for c in cols)


def resize_half_pixel(x: jax.Array, size: int = SIZE) -> jax.Array:
    """(b, H, W, C) float32 -> (b, size, size, C), summed as PyTorch does: h0 (w0 a + w1 b) + h1 (w0 c + w1 d)."""
    (r0, r1, fy), (c0, c1, fx) = half_pixel_taps(x.shape[1], size), half_pixel_taps(x.shape[2], size)
    a, b, c, d = _corners(x, (r0, r1), (c0, c1))
    wx1, wy1 = fx[None, None, :, None], fy[None, :, None, None]
    wx0, wy0 = 1 - wx1, 1 - wy1
    return wy0 * (wx0 * a + wx1 * b) + wy1 * (wx0 * c + wx1 * d)


def resize_tf1(x: jax.Array, size: int = SIZE) -> jax.Array:
    """(b, H, W, C) float32 -> (b, size, size, C), interpolated along the width first, then the height."""
    (r0, r1, fy), (c0, c1, fx) = tf1_taps(x.shape[1], size), tf1_taps(x.shape[2], size)
    a, b, c, d = _corners(x, (r0, r1), (c0, c1))
    fx, fy = fx[None, None, :, None], fy[None, :, None, None]
    top, bottom = a + (b - a) * fx, c + (d - c) * fx
    return top + (bottom - top) * fy


@functools.partial(jax.jit, static_argnames="flavor")
def preprocess(images: jax.Array, flavor: str = "pytorch-fid") -> jax.Array:
    """(b, H, W, 3) uint8 RGB -> (b, 299, 299, 3) float32, the network input of that flavor (see module doc)."""
    x = images.astype(jnp.float32)
    if check_flavor(flavor) == "pytorch-fid":
        return 2 * resize_half_pixel(x / 255) - 1
    return (resize_tf1(x) - 128) / 128
