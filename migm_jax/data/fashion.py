"""Fashion-MNIST (MIT licence) as a class dataset of the one record schema.

The input is the dataset's four IDX files (gzipped or not): train-images-idx3-ubyte, train-labels-idx1-ubyte,
t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte. They come from, in this order: --source (a folder holding
them, or Debian's dataset-fashion-mnist package as a .deb), the folder where that package installs them,
the package in --downloads, or the package downloaded by `apt-get download` (pinned by version and sha256).

Splits: train (60,000 images) and test (the official 10,000, the held-out set). Each 28x28 grey image is
padded with 2 black pixels a side to 32x32 and replicated to RGB; labels are the dataset's own class ids
(0 = t-shirt/top ... 9 = ankle boot); captions are empty (a class dataset).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import tempfile
from typing import Iterator, Optional

import numpy as np

from migm_jax.data.downloads import Pin, apt_download, checked, member_from_deb, record_of, sha256
from migm_jax.data.records import write_split
from migm_jax.files import check_output_dir

CLASS_NAMES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
               "ankle boot")
SIDE, PAD = 28, 2
RESOLUTION = SIDE + 2 * PAD
SPLITS = {"train": "train", "test": "t10k"}  # split -> IDX file prefix (60,000 and 10,000 images)
PACKAGE = Pin("dataset-fashion-mnist", "0.0~git20200523.55506a9-1", "dataset-fashion-mnist_0.0~git20200523.55506a9-1_all.deb",
              "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0", "MIT")
INSTALLED = "/usr/share/datasets/fashion-mnist"  # where the Debian package puts the IDX files
FIX = f"give --source DIR (the four IDX files) or --source {PACKAGE.file}, or a --downloads folder holding the latter"


def idx_files(prefix: str) -> tuple[str, str]:
    """The IDX file names of one split (without .gz): images, labels."""
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _find(folder: str, name: str) -> Optional[str]:
    for candidate in (name + ".gz", name):
        if os.path.isfile(os.path.join(folder, candidate)):
            return os.path.join(folder, candidate)
    return None


def read_idx(path: str, dims: int) -> np.ndarray:
    """The uint8 array of an IDX file (gzipped if its name ends in .gz) with `dims` dimensions: (n,) labels
    or (n, 28, 28) images. ValueError, naming the file, otherwise."""
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"{path} cannot be read as an IDX file ({e}); {FIX}") from None
    if len(raw) < 4 + 4 * dims or raw[:4] != bytes([0, 0, 8, dims]):
        raise ValueError(f"{path} is not an IDX file of {dims}-d unsigned bytes; {FIX}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * dims)
    if shape[1:] != (SIDE, SIDE)[: dims - 1] or data.size != int(np.prod(shape)):
        raise ValueError(f"{path} holds {shape} ({data.size} bytes of data), not {dims}-d Fashion-MNIST data "
                         f"(n{', 28, 28' if dims == 3 else ''}); {FIX}")
    return data.reshape(shape)


@contextlib.contextmanager
def fashion_folder(source: Optional[str] = None, downloads: Optional[str] = None) -> Iterator[tuple[str, dict]]:
    """(a folder holding the four IDX files, what to record of where they came from); see the module doc for
    the order in which `source`, the installed package, --downloads and a download are tried."""
    if downloads is not None:
        check_output_dir(downloads, "--downloads")
    with tempfile.TemporaryDirectory(prefix="fashion-mnist-") as tmp:
        deb = None
        if source is not None and os.path.isdir(source):
            folder = source
        elif source is not None:
            if not os.path.isfile(source):
                raise FileNotFoundError(f"--source {source} does not exist; {FIX}")
            deb = source
        elif os.path.isdir(INSTALLED):
            folder = INSTALLED
        else:
            os.makedirs(downloads or tmp, exist_ok=True)
            copy = os.path.join(downloads or tmp, PACKAGE.file)
            deb = checked(copy, PACKAGE) if os.path.isfile(copy) else apt_download(PACKAGE, downloads or tmp, FIX)
        record = {}
        if deb is not None:
            for prefix in SPLITS.values():
                for name in idx_files(prefix):
                    member_from_deb(deb, f"{INSTALLED.lstrip('/')}/{name}.gz", tmp, "--source", FIX)
            folder, record["deb"] = tmp, record_of(deb, PACKAGE, PACKAGE.sha256)
        yield folder, record


def load_split(folder: str, split: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """(images (n, 28, 28) uint8, labels (n,) uint8, {file: sha256}) of `split` from the IDX files in `folder`."""
    prefix = SPLITS[split]
    paths = []
    for name in idx_files(prefix):
        path = _find(folder, name)
        if path is None:
            raise FileNotFoundError(f"{folder} holds no {name}[.gz]; {FIX}")
        paths.append(path)
    images, labels = read_idx(paths[0], 3), read_idx(paths[1], 1)
    if len(images) != len(labels) or not len(images):
        raise ValueError(f"{paths[0]} holds {len(images)} images and {paths[1]} {len(labels)} labels; {FIX}")
    if labels.max() >= len(CLASS_NAMES):
        raise ValueError(f"{paths[1]} holds label {labels.max()}; Fashion-MNIST has {len(CLASS_NAMES)} classes")
    return images, labels, {os.path.basename(p): sha256(p) for p in paths}


def to_rgb(images: np.ndarray) -> np.ndarray:
    """(n, 28, 28) grey uint8 -> (n, 32, 32, 3): padded with black, replicated over the channels."""
    padded = np.pad(images, ((0, 0), (PAD, PAD), (PAD, PAD)))
    return np.repeat(padded[..., None], 3, axis=-1)


def build_fashion(data_dir: str, folder: str, record: dict, records_per_shard: int = 4096,
                  progress: bool = True) -> dict:
    """Writes the train and test splits from the IDX files in `folder`; returns the split sizes. Both splits
    are read and checked before anything is written."""
    splits = {split: load_split(folder, split) for split in SPLITS}
    files = {name: digest for _, _, hashes in splits.values() for name, digest in hashes.items()}
    meta = {"builder": "fashion_mnist", "resolution": RESOLUTION, "class_names": list(CLASS_NAMES),
            "licence": PACKAGE.licence, "source": {**record, "files": files}}
    for split, (images, labels, _) in splits.items():
        records = ((image, int(label), "") for image, label in zip(to_rgb(images), labels))
        write_split(data_dir, split, records, len(images), meta, records_per_shard=records_per_shard,
                    progress=progress)
    return {split: len(images) for split, (images, _, _) in splits.items()}
