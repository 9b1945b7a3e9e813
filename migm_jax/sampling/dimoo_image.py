"""Lumina-DiMOO image <-> token helpers (`utils/image_utils.py`: decode_vq_to_image, encode_img_with_breaks).

The special ids are arguments; the original hard-codes text_vocab_size (image token offset) 126356,
NEWLINE 126084, BOI 126349, EOI 126350.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image


def codes_to_uint8(images: jax.Array) -> jax.Array:
    """Decoder output -> PNG pixels, as decode_vq_to_image does: `.clip(0, 1)`, then diffusers
    VaeImageProcessor(do_normalize=False).postprocess -> round-half-even(x * 255) in float32, uint8.

    images: (b,H,W,3) float (VQModel.decode_code output, unclipped) -> (b,H,W,3) uint8.
    """
    x = jnp.clip(jnp.asarray(images, jnp.float32), 0.0, 1.0)
    return jnp.round(x * jnp.float32(255.0)).astype(jnp.uint8)


def image_tokens_with_breaks(codes: jax.Array, text_vocab_size: int, newline_id: int, boi_id: int,
                             eoi_id: int) -> jax.Array:
    """encode_img_with_breaks's layout: [BOI] + for each row (codes + text_vocab_size, then NEWLINE) + [EOI].

    codes: (h,w) int code grid (row-major) -> ids (h*(w+1)+2,) int32. Every row, the last included,
    ends with a NEWLINE.
    """
    codes = jnp.asarray(codes, jnp.int32)
    h = codes.shape[0]
    rows = jnp.concatenate([codes + text_vocab_size, jnp.full((h, 1), newline_id, jnp.int32)], axis=1)
    return jnp.concatenate([jnp.array([boi_id], jnp.int32), rows.reshape(-1), jnp.array([eoi_id], jnp.int32)])


def preprocess_uint8(img: np.ndarray, vae_scale_factor: int = 16) -> np.ndarray:
    """encode_img_with_breaks's input path: PIL `.convert("RGB")`, then diffusers
    VaeImageProcessor(vae_scale_factor, do_normalize=False).preprocess: Lanczos-resize down to the nearest
    multiple of vae_scale_factor per side (a no-op when already a multiple), then /255 in float32.

    img: (H,W,3) or (H,W) uint8 -> (1, H - H % f, W - W % f, 3) float32 in [0, 1] (NHWC, VQModel.encode input).
    """
    pil = Image.fromarray(np.asarray(img, np.uint8)).convert("RGB")
    w, h = (s - s % vae_scale_factor for s in pil.size)
    if (w, h) != pil.size:
        pil = pil.resize((w, h), resample=Image.Resampling.LANCZOS)
    return (np.asarray(pil).astype(np.float32) / 255.0)[None]
