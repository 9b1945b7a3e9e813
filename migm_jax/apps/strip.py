"""The unmasking of one image as a strip of frames, one per sampling step, from the sampler's per-step trace."""

from __future__ import annotations

import numpy as np
from PIL import Image

from migm_jax.sampling.schedules import FULL

FULL_COLOR = (31, 119, 180)  # blue bar: the step ran the base model
CHEAP_COLOR = (255, 127, 14)  # orange bar: the shortcut, a reused feature or an ML-Cache partial step
MASKED_GRAY = 128


def unmasking_strip(image: np.ndarray, masked: np.ndarray, kinds: np.ndarray, per_row: int = 16,
                    height: int = 64, bar: int = 5, gap: int = 2) -> np.ndarray:
    """Frames of `image` as the sampler fixed its tokens: frame s shows the final image where the token grid's
    cells are fixed after step s and gray where they are still masked, over a bar in the step's colour
    (FULL_COLOR: the base model, else CHEAP_COLOR); rows of `per_row` frames on white.

    image (H, W, 3) uint8, the final image; masked (N, gh*gw) bool, True = still masked after the step (the
    token grid has the image's aspect); kinds (N,) FULL / CHEAP. Frames are `height` pixels high (smaller
    images keep their size). Returns (rows * (h + bar + gap) + gap, cols * (w + gap) + gap, 3) uint8."""
    n, cells = masked.shape
    h_img, w_img = image.shape[:2]
    factor = int(round(np.sqrt(h_img * w_img / cells)))
    gh, gw = h_img // factor, w_img // factor
    if gh * gw != cells:
        raise ValueError(f"a trace of {cells} cells does not tile a {h_img}x{w_img} image")
    h = min(height, h_img)
    w = max(1, round(w_img * h / h_img))
    cols = min(n, per_row)
    nrows = -(-n // cols)
    strip = np.full((nrows * (h + bar + gap) + gap, cols * (w + gap) + gap, 3), 255, np.uint8)
    for s in range(n):
        fixed = ~masked[s].reshape(gh, gw)
        pixels = np.repeat(np.repeat(fixed, h_img // gh, axis=0), w_img // gw, axis=1)[..., None]
        frame = np.where(pixels, image, np.uint8(MASKED_GRAY)).astype(np.uint8)
        if (h, w) != (h_img, w_img):
            frame = np.asarray(Image.fromarray(frame).resize((w, h), Image.BILINEAR))
        y, x = gap + (s // cols) * (h + bar + gap), gap + (s % cols) * (w + gap)
        strip[y:y + h, x:x + w] = frame
        strip[y + h:y + h + bar, x:x + w] = FULL_COLOR if kinds[s] == FULL else CHEAP_COLOR
    return strip
