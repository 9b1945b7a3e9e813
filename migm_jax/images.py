"""Turning decoded images into PNG files and grids (written atomically: no partial file on error)."""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np
from PIL import Image

from migm_jax.files import write_files_atomically


def check_finite(images: np.ndarray) -> np.ndarray:
    """`images` itself; ValueError when any value is NaN or infinite (nothing is written then)."""
    images = np.asarray(images)
    if np.issubdtype(images.dtype, np.floating) and not np.isfinite(images).all():
        bad = sorted({int(i) for i in np.nonzero(~np.isfinite(images).reshape(len(images), -1).all(axis=1))[0]})
        raise ValueError(f"the sampled images {', '.join(map(str, bad[:10]))} hold NaN or infinite values "
                         "(non-finite weights or settings); no image written")
    return images


def unit_range(images) -> jnp.ndarray:
    """uint8 images (b,H,W,3) in [0,255] -> float32 in [-1,1] (the VQGAN's and the classifier's input range)."""
    return jnp.asarray(images).astype(jnp.float32) / 127.5 - 1.0


def _array_module(images):
    """jax.numpy for jax arrays (also traced ones, inside jit), numpy otherwise."""
    import jax

    return jnp if isinstance(images, jax.Array) else np


def clip_uint8(images):
    """Decoded images (b,H,W,3) float in ~[-1,1] -> uint8 by rounding and clipping (the inverse of `unit_range`;
    what the quality metric compares with real images). numpy in, numpy out; jax in (or traced), jax out."""
    xp = _array_module(images)
    return xp.clip(xp.round((xp.asarray(images, xp.float32) + 1.0) * 127.5), 0, 255).astype(xp.uint8)


def minmax_uint8(images):
    """Per-image min-max normalisation to [0, 255], truncated to uint8 (how the original MaskGIT scripts save
    grids). images: (b, H, W, 3) float -> (b, H, W, 3) uint8; numpy in, numpy out; jax in (or traced), jax out.
    """
    xp = _array_module(images)
    images = xp.asarray(images, xp.float32)
    lo = images.min(axis=(1, 2, 3), keepdims=True)
    hi = images.max(axis=(1, 2, 3), keepdims=True)
    return xp.clip((images - lo) / xp.maximum(hi - lo, 1e-12) * 255.0, 0, 255).astype(xp.uint8)


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


def labelled_grid(rows: list[np.ndarray], row_names: list[str], column_names: list[str], scale: int = 2,
                  padding: int = 2) -> np.ndarray:
    """One row of images per entry of `rows` (each (n,H,W,3) uint8, same n), each image enlarged
    `scale` times (nearest), a name above each column (wrapped at spaces to the column's width, e.g. a
    prompt) and above each row -> (H', W', 3) uint8."""
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default()
    n, h, w = rows[0].shape[:3]
    h, w, text = h * scale, w * scale, 14
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    headers = [wrap_words(name, lambda t: measure.textlength(t, font=font), w - 2) for name in column_names]
    top = text * max([len(lines) for lines in headers] + [1])
    width = n * (w + padding) + padding
    height = top + sum(text + h + padding for _ in rows) + padding
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for j, lines in enumerate(headers):
        for k, line in enumerate(lines):
            draw.text((padding + j * (w + padding) + 2, 1 + k * text), line, fill="black", font=font)
    y = top
    for images, name in zip(rows, row_names):
        draw.text((padding + 2, y + 1), name, fill="black", font=font)
        y += text
        for j, img in enumerate(images):
            big = Image.fromarray(img).resize((w, h), Image.NEAREST)
            canvas.paste(big, (padding + j * (w + padding), y))
        y += h + padding
    return np.asarray(canvas)


def wrap_words(text: str, length, limit: float) -> list[str]:
    """`text` in lines of whole words whose `length(line)` stays within `limit` (a longer word gets a line
    of its own)."""
    lines: list[str] = []
    for word in text.split():
        if lines and length(lines[-1] + " " + word) <= limit:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def save_labelled_grid(rows: list[np.ndarray], row_names: list[str], column_names: list[str], out: str,
                       save_each: bool = False) -> list[str]:
    """Writes `labelled_grid` to `out` (and out_<row>_<i>.png per image if save_each); returns the paths.
    All files appear together once all are complete."""
    items = [(out, _png_writer(labelled_grid(rows, row_names, column_names)))]
    if save_each:
        stem, ext = os.path.splitext(out)
        items += [(f"{stem}_{r}_{i:03d}{ext or '.png'}", _png_writer(img))
                  for r, images in enumerate(rows) for i, img in enumerate(images)]
    return write_files_atomically(items)
def _png_writer(image: np.ndarray):
    return lambda f: Image.fromarray(image).save(f, format="PNG")


def save_png(image: np.ndarray, path: str) -> None:
    """Writes a (H, W, 3) uint8 PNG; the file appears only once complete."""
    write_files_atomically([(path, _png_writer(image))])


def save_images(images: np.ndarray, out: str, save_each: bool = False, nrow: int = 5) -> list[str]:
    """Writes a grid to `out` (and out_<i>.png per image if save_each); returns the written paths.
    All files appear together once all are complete; after an error none was written or changed."""
    items = [(out, _png_writer(make_grid(images, nrow)))]
    if save_each:
        stem, ext = os.path.splitext(out)
        items += [(f"{stem}_{i:03d}{ext or '.png'}", _png_writer(img)) for i, img in enumerate(images)]
    return write_files_atomically(items)
