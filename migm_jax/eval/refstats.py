"""FID reference statistics: of an image folder or a TFDS dataset split (computed like the features of
generated images), and read back from this package's, pytorch-fid's or torch-fidelity's files.

Files written here are pytorch-fid's format: an .npz with `mu` (D,) and `sigma` (D, D) in float64, plus
`num_images`. torch-fidelity caches the same two keys in a `torch.save` file (a dict of numpy arrays).
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
from jax.sharding import Mesh
from PIL import Image
from tqdm import tqdm

from migm_jax.convert.torch_file import load_torch_file
from migm_jax.eval.features import Extractor
from migm_jax.eval.stats import FeatureStats, add_batch, batch_moments, pad_rows
from migm_jax.files import write_files_atomically
from migm_jax.images import minmax_uint8

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
LOADERS = 8  # threads decoding image files


def list_images(folder: str) -> list[str]:
    """The image files below `folder` (recursively, by extension, case-insensitive), sorted by relative path."""
    if not os.path.isdir(folder):
        raise ValueError(f"--images: no folder at {folder}")
    found = sorted(os.path.relpath(os.path.join(root, name), folder)
                   for root, _, names in os.walk(folder) for name in names if name.lower().endswith(IMAGE_EXTENSIONS))
    if len(found) < 2:
        raise ValueError(f"--images: {folder} holds {len(found)} image file(s) ({', '.join(IMAGE_EXTENSIONS)}, "
                         "searched recursively); FID statistics need at least 2")
    return [os.path.join(folder, p) for p in found]


def as_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8 -> (H, W, 3) uint8 (grey repeated, alpha dropped)."""
    image = np.asarray(image, np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]


def load_rgb(path: str) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def resize_center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8 as the original evaluation's torchvision transforms on a PIL
    image: Resize(size) (shorter side to `size`, longer to int(size * long / short), PIL bilinear), then
    CenterCrop(size) (offsets int(round((side - size) / 2)))."""
    h, w = image.shape[:2]
    if h <= w:
        new_h, new_w = size, int(size * w / h)
    else:
        new_h, new_w = int(size * h / w), size
    resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    return resized[top:top + size, left:left + size]


@dataclasses.dataclass(frozen=True)
class ImageList:
    """`count` reference images in a fixed order: `load(i)` -> (H, W, 3) uint8 RGB; `name(i)` for errors."""

    count: int
    load: Callable[[int], np.ndarray]
    name: Callable[[int], str]


def folder_images(folder: str) -> ImageList:
    """The image files below `folder`, in `list_images` order."""
    paths = list_images(folder)
    return ImageList(len(paths), lambda i: load_rgb(paths[i]), lambda i: paths[i])


def tfds_images(spec: str, data_dir: str | None) -> ImageList:
    """The 'image' feature of the records of a prepared TFDS split, spec 'NAME[:VERSION]/SPLIT' (e.g.
    'imagenet2012/validation'), read with `tfds.data_source` (array_record files, no TensorFlow)."""
    name, sep, split = spec.partition("/")
    if not (name and sep and split):
        raise ValueError(f"--images tfds:{spec}: expected tfds:NAME[:VERSION]/SPLIT, e.g. tfds:imagenet2012/validation")
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ValueError("--images tfds:...: needs tensorflow-datasets and array-record: pip install 'migm-jax[data]'") from None
    where = data_dir or "TFDS's default data_dir"
    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir)
    except Exception as e:  # TFDS raises many types for a missing / unprepared / tfrecord-only dataset
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"--images tfds:{spec}: cannot open it in {where} ({first[:200]}); prepare it with "
                         "file_format='array_record' or give its folder with --tfds-data-dir") from None
    if "image" not in source.dataset_info.features:
        raise ValueError(f"--images tfds:{spec} has no 'image' feature (has {', '.join(source.dataset_info.features)})")
    return ImageList(len(source), lambda i: as_rgb(source[i]["image"]), lambda i: f"tfds:{spec} record {i}")


def image_list(images: str, tfds_data_dir: str | None = None) -> ImageList:
    """--images: 'tfds:NAME[:VERSION]/SPLIT' or a folder; at least 2 images."""
    found = tfds_images(images[len("tfds:"):], tfds_data_dir) if images.startswith("tfds:") else folder_images(images)
    if found.count < 2:
        raise ValueError(f"--images: {images} holds {found.count} image(s); FID statistics need at least 2")
    return found


def reference_statistics(images: ImageList, extractor: Extractor, mesh: Mesh, batch_size: int,
                         resize_crop: int | None = None, minmax: bool = False) -> FeatureStats:
    """Feature statistics of `images` in their order, in batches over the mesh (the last one padded).
    resize_crop: each image through `resize_center_crop` first (else all must have the first one's size);
    minmax: each image min-max stretched to [0, 255] as `minmax_uint8` (what the original does to real
    images before their features, as to generated ones)."""
    prepare = (lambda im: resize_center_crop(im, resize_crop)) if resize_crop else (lambda im: im)
    size = prepare(images.load(0)).shape[:2]

    def load(i: int) -> np.ndarray:
        image = prepare(images.load(i))
        if image.shape[:2] != size:
            raise ValueError(f"{images.name(i)} is {image.shape[1]}x{image.shape[0]}, the first image {size[1]}x{size[0]}: "
                             "the reference images must share one size; give --resize-crop S to make them all SxS")
        return image

    stats = FeatureStats(extractor.net.feature_dim)
    labels = np.zeros(batch_size, np.int32)  # unused by the Inception features
    with ThreadPoolExecutor(LOADERS) as pool, tqdm(total=images.count, desc="reference images", unit="image") as bar:
        for start in range(0, images.count, batch_size):
            chunk = range(start, min(start + batch_size, images.count))
            batch = np.stack(list(pool.map(load, chunk)))
            batch = minmax_uint8(batch.astype(np.float32) / 255.0) if minmax else batch
            moments, _ = batch_moments(extractor, mesh, pad_rows(batch, batch_size), labels, len(chunk))
            add_batch(stats, moments)
            bar.update(len(chunk))
    return stats


def write_ref_stats(path: str, stats: FeatureStats, flavor: str | None = None, resize_crop: int | None = None,
                    minmax: bool = False) -> None:
    """Writes mu, sigma (float64), num_images and how the features were made (flavor when known,
    resize_crop: 0 for none, minmax) to the .npz `path`, atomically."""
    mu, sigma = stats.mean_cov()
    made = {"resize_crop": np.int64(resize_crop or 0), "minmax": np.bool_(minmax)}
    if flavor is not None:
        made["flavor"] = np.str_(flavor)
    write_files_atomically([(path, lambda f: np.savez(f, mu=mu, sigma=sigma, num_images=np.int64(stats.count),
                                                       **made))])


def check_ref_stats_flavor(path: str, flavor: str) -> None:
    """One-line ValueError when the statistics file `path` records (ref-stats does) another preprocessing
    flavor than `flavor`; files that record none (pytorch-fid's, torch-fidelity's) pass."""
    if not zipfile.is_zipfile(path) or not path.lower().endswith(".npz"):
        return
    with np.load(path) as z:
        recorded = str(z["flavor"]) if "flavor" in z.files else None
    if recorded is not None and recorded != flavor:
        raise ValueError(f"{path} holds statistics of {recorded} features, this run computes {flavor} ones; pass "
                         f"--flavor {recorded}, or compute the statistics again with ref-stats --flavor {flavor}")


def read_ref_stats(path: str, dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mu (D,), sigma (D, D)) float64 of a statistics file: an .npz with `mu` and `sigma` (this package's,
    pytorch-fid's) or torch-fidelity's cached `torch.save` dict with the same keys. One-line ValueError when
    the file is missing, lacks those keys, or (with `dim`) is not of dimension `dim`."""
    if not os.path.isfile(path):
        raise ValueError(f"--ref-stats: no statistics file at {path}; compute one with "
                         "`python -m migm_jax.eval ref-stats --images DIR --inception FILE --out stats.npz`")
    if zipfile.is_zipfile(path) and not path.lower().endswith(".npz"):
        content = load_torch_file(path)
        keys = list(content) if isinstance(content, dict) else []
        mu, sigma = (content.get("mu"), content.get("sigma")) if keys else (None, None)
    elif not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a statistics file (an .npz of ref-stats or pytorch-fid, or torch-fidelity's "
                         "cached statistics); compute one with `python -m migm_jax.eval ref-stats`")
    else:
        try:
            with np.load(path) as z:
                keys = list(z.files)
                mu, sigma = (z[k] if k in z.files else None for k in ("mu", "sigma"))
        except (ValueError, OSError, zipfile.BadZipFile) as e:
            raise ValueError(f"{path} is not an .npz statistics file ({e})") from None
    if mu is None or sigma is None or not isinstance(mu, np.ndarray) or not isinstance(sigma, np.ndarray):
        raise ValueError(f"{path} holds no 'mu' and 'sigma' arrays (keys: {', '.join(map(str, keys)) or 'none'}); "
                         "expected ref-stats' or pytorch-fid's .npz or torch-fidelity's cached statistics")
    mu, sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
    d = mu.shape[0] if mu.ndim == 1 else -1
    if d < 0 or sigma.shape != (d, d):
        raise ValueError(f"{path}: mu {mu.shape} and sigma {sigma.shape} are not the statistics of one feature space")
    if dim is not None and d != dim:
        raise ValueError(f"{path} holds statistics of {d}-d features, the Inception pool features are {dim}-d; "
                         "compute the reference statistics with ref-stats (same Inception)")
    return mu, sigma
