"""The datasets: builders of one array_record record schema (records.py: image, class id, caption, index),
read by every base-model task through `ImageReader(data_dir, split)`.

- shapes.py: class-conditional synthetic shapes (10 classes, 64x64 RGB), rendered from a seed, also
  into memory without a dataset on disk;
- emoji.py: emoji in two drawing styles (Twemoji, Noto Color Emoji) with their names as captions
  (inputs: emoji_sources.py; attribution: EMOJI_NOTICE.txt);
- fashion.py: Fashion-MNIST (10 classes, 28x28 grey padded to 32x32 RGB) with its official test split;
- downloads.py: the builders' pinned inputs from package registries.

CLI: python -m migm_jax.data {shapes,emoji,fashion} --help
"""

from migm_jax.data.records import ImageReader, dataset_dir, read_meta, write_split
from migm_jax.data.shapes import CLASS_NAMES, RESOLUTION, SPLIT_SEEDS, render, render_batch, write_shapes

__all__ = ["CLASS_NAMES", "RESOLUTION", "SPLIT_SEEDS", "ImageReader", "dataset_dir", "read_meta", "render",
           "render_batch", "write_shapes", "write_split"]
