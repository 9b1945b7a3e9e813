"""Class-conditional synthetic shapes (10 classes, 64x64 RGB), rendered deterministically from a seed,
and their TFDS array_record splits on disk: training data for the small MaskGIT and its classifier."""

from migm_jax.synthetic.dataset import ImageReader, write_split
from migm_jax.synthetic.render import CLASS_NAMES, RESOLUTION, SPLIT_SEEDS, render, render_batch

__all__ = ["CLASS_NAMES", "RESOLUTION", "SPLIT_SEEDS", "render", "render_batch", "write_split", "ImageReader"]
