"""Turning decoded images into PNG files and grids."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image


def minmax_uint8(images: np.ndarray) -> np.ndarray:
    """Per-image min-max normalisation to [0, 255] (how the original MaskGIT scripts save grids).

    images: (b, H, W, 3) float -> (b, H, W, 3) uint8.
    """
    images = np.asarray(images, np.float32)
    lo = images.min(axis=(1, 2, 3), keepdims=True)
    hi = images.max(axis=(1, 2, 3), keepdims=True)
    return np.clip((images - lo) / np.maximum(hi - lo, 1e-12) * 255.0, 0, 255).astype(np.uint8)


def make_grid(images: np.ndarray, nrow: int = 5, padding: int = 2) -> np.ndarray:
    """Tiles (b, H, W, 3) uint8 images into rows of `nrow` with `padding` black pixels around each."""
    b, h, w, c = images.shape
    ncol = min(nrow, b)
    rows = -(-b // ncol)
    grid = np.zeros((rows * (h + padding) + padding, ncol * (w + padding) + padding, c), np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, ncol)
        y, x = padding + r * (h + padding), padding + q * (w + padding)
        grid[y:y + h, x:x + w] = img
    return grid


def save_png(image: np.ndarray, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(image).save(path)


def save_images(images: np.ndarray, out: str, save_each: bool = False, nrow: int = 5) -> list[str]:
    """Writes a grid to `out` (and out_<i>.png per image if save_each); returns the written paths."""
    save_png(make_grid(images, nrow), out)
    written = [out]
    if save_each:
        stem, ext = os.path.splitext(out)
        for i, img in enumerate(images):
            written.append(f"{stem}_{i:03d}{ext or '.png'}")
            save_png(img, written[-1])
    return written
