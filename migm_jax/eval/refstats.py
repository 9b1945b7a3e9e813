"""FID reference statistics: of an image folder (computed like the features of generated images), and read
back from this package's, pytorch-fid's or torch-fidelity's files.

Files written here are pytorch-fid's format: an .npz with `mu` (D,) and `sigma` (D, D) in float64, plus
`num_images`. torch-fidelity caches the same two keys in a `torch.save` file (a dict of numpy arrays).
"""

from __future__ import annotations

import os
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from jax.sharding import Mesh
from PIL import Image
from tqdm import tqdm

from migm_jax.convert.torch_file import load_torch_file
from migm_jax.eval.batch_stats import batch_moments, pad_rows
from migm_jax.eval.features import Extractor
from migm_jax.eval.fid import FeatureStats
from migm_jax.files import write_files_atomically

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


def load_rgb(path: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; ValueError unless it is (H, W) = `size` (when given)."""
    with Image.open(path) as im:
        image = np.asarray(im.convert("RGB"))
    if size is not None and image.shape[:2] != size:
        raise ValueError(f"{path} is {image.shape[1]}x{image.shape[0]}, the first image {size[1]}x{size[0]}: the "
                         "reference images must share one size; resize or center-crop the folder first")
    return image


def folder_statistics(paths: list[str], extractor: Extractor, mesh: Mesh, batch_size: int) -> FeatureStats:
    """Feature statistics of the images `paths` in that order, in batches over the mesh (the last one padded)."""
    size = load_rgb(paths[0]).shape[:2]
    stats = FeatureStats(extractor.net.feature_dim)
    labels = np.zeros(batch_size, np.int32)  # unused by the Inception features
    with ThreadPoolExecutor(LOADERS) as pool, tqdm(total=len(paths), desc="reference images", unit="image") as bar:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start:start + batch_size]
            images = np.stack(list(pool.map(lambda p: load_rgb(p, size), chunk)))
            moments, _ = batch_moments(extractor, mesh, pad_rows(images, batch_size), labels, len(chunk))
            stats.add_moments(int(moments["count"]), moments["sum"], moments["scatter"])
            bar.update(len(chunk))
    return stats


def write_ref_stats(path: str, stats: FeatureStats) -> None:
    """Writes mu, sigma (float64) and num_images to the .npz `path`, atomically."""
    mu, sigma = stats.mean_cov()
    write_files_atomically([(path, lambda f: np.savez(f, mu=mu, sigma=sigma, num_images=np.int64(stats.count)))])


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
