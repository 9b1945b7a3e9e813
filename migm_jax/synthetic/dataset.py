"""Synthetic shapes splits on disk: TFDS in array_record format, written and read without TensorFlow.

Layout: `<data_dir>/migm_synthetic_shapes/1.0.0/` with the TFDS metadata (dataset_info.json,
features.json), one shard set per split, and `shapes_meta.json` (resolution, class names, and each
split's seed and size). Record i of a split is `render(i, split)`: image (64, 64, 3) uint8, label
int32, index int64; `tfds.data_source` and `tfds.builder_from_directory` read it.
"""

from __future__ import annotations

import json
import os

import numpy as np
from tqdm import tqdm

from migm_jax.synthetic.render import CLASS_NAMES, RESOLUTION, SPLIT_SEEDS, render

NAME, VERSION = "migm_synthetic_shapes", "1.0.0"
META_FILE = "shapes_meta.json"
TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"


def version_dir(data_dir: str) -> str:
    return os.path.join(data_dir, NAME, VERSION)


def _how_to_write(data_dir: str, split: str) -> str:
    return f"create it with python -m migm_jax.synthetic --out {data_dir} --split {split} --images 50000"


def _tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ImportError("synthetic shapes datasets need tensorflow-datasets and array-record: "
                          "pip install 'migm-jax[data]'") from None
    return tfds


def record_features():
    """TFDS FeaturesDict of one record: image (64, 64, 3) uint8 bytes, label int32, index int64."""
    f = _tfds().features
    return f.FeaturesDict({
        "image": f.Tensor(shape=(RESOLUTION, RESOLUTION, 3), dtype=np.uint8, encoding=f.Encoding.BYTES),
        "label": np.int32, "index": np.int64})


def _shard_name(split: str, shard: int, n_shards: int) -> str:
    return f"{NAME}-{split}.array_record-{shard:05d}-of-{n_shards:05d}"


def _write_shard(path: str, features, split: str, first: int, count: int, bar) -> None:
    """Records first .. first + count - 1 into `path`, via a temporary file renamed when complete."""
    from array_record.python.array_record_module import ArrayRecordWriter

    writer = ArrayRecordWriter(path + ".tmp", "group_size:1")
    for index in range(first, first + count):
        image, label = render(index, split)
        writer.write(features.serialize_example({"image": image, "label": np.int32(label), "index": np.int64(index)}))
        bar.update(1)
    writer.close()
    os.replace(path + ".tmp", path)


def _write_json(path: str, content: dict) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(content, f, indent=2)
    os.replace(path + ".tmp", path)


def write_split(data_dir: str, split: str, n_images: int, images_per_shard: int = 4096, progress: bool = True) -> str:
    """Renders images 0 .. n_images - 1 of `split` into array_record shards of `images_per_shard`
    and (re)writes the metadata; splits written before are kept. Returns the dataset's version directory."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r} (expected one of {', '.join(SPLIT_SEEDS)})")
    if n_images < 1 or images_per_shard < 1:
        raise ValueError(f"need n_images >= 1 and images_per_shard >= 1, got {n_images} and {images_per_shard}")
    tfds = _tfds()
    out = version_dir(data_dir)
    meta_path = os.path.join(out, META_FILE)
    meta = {"name": NAME, "version": VERSION, "resolution": RESOLUTION, "class_names": list(CLASS_NAMES), "splits": {}}
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            old_meta = json.load(f)
        if old_meta["resolution"] != RESOLUTION or old_meta["class_names"] != list(CLASS_NAMES):
            raise ValueError(f"{out} holds splits of another resolution or class list; use another data_dir")
        meta["splits"] = old_meta["splits"]
    os.makedirs(out, exist_ok=True)

    features = record_features()
    firsts = range(0, n_images, images_per_shard)
    names = [_shard_name(split, s, len(firsts)) for s in range(len(firsts))]
    lengths = [min(images_per_shard, n_images - first) for first in firsts]
    with tqdm(total=n_images, desc=f"shapes {split}", unit="img", disable=not progress) as bar:
        for name, first, count in zip(names, firsts, lengths):
            _write_shard(os.path.join(out, name), features, split, first, count, bar)

    size = sum(os.path.getsize(os.path.join(out, name)) for name in names)
    splits = {split: tfds.core.SplitInfo(name=split, shard_lengths=lengths, num_bytes=size)}
    if os.path.exists(os.path.join(out, "dataset_info.json")):
        splits = {**{s.name: s for s in tfds.builder_from_directory(out).info.splits.values()}, **splits}
    tfds.folder_dataset.write_metadata(data_dir=out, features=features, split_infos=list(splits.values()),
                                       filename_template=TEMPLATE, check_data=False)
    meta["splits"] = {**meta["splits"], split: {"seed": SPLIT_SEEDS[split], "images": n_images}}
    _write_json(meta_path, meta)
    for stale in os.listdir(out):  # shards of an earlier write of this split with another shard count
        if stale.startswith(f"{NAME}-{split}.array_record-") and stale not in names:
            os.remove(os.path.join(out, stale))
    return out


def read_meta(data_dir: str, split: str = "train") -> dict:
    """The dataset's shapes_meta.json; `split` only names the split in the how-to-write hint."""
    path = os.path.join(version_dir(data_dir), META_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no synthetic shapes dataset at {data_dir} ({NAME}/{VERSION}/{META_FILE} missing); "
                                + _how_to_write(data_dir, split))
    with open(path) as f:
        return json.load(f)


class ImageReader:
    """Random access to one written split: `read(indices)` -> {"image": (n, 64, 64, 3) uint8, "label": (n,) int32}."""

    def __init__(self, data_dir: str, split: str):
        self.meta = read_meta(data_dir, split)
        if split not in self.meta["splits"]:
            hint = f"; {_how_to_write(data_dir, split)}" if split in SPLIT_SEEDS else ""
            raise ValueError(f"{data_dir} has no split {split!r} (has {', '.join(self.meta['splits'])}){hint}")
        self.source = _tfds().data_source(f"{NAME}:{VERSION}", data_dir=data_dir, split=split)

    def __len__(self) -> int:
        return len(self.source)

    def read(self, indices: np.ndarray) -> dict:
        """Images and labels of the records `indices` (n,)."""
        indices = np.asarray(indices, np.int64).reshape(-1)
        recs = self.source.__getitems__(indices.tolist())
        for i, r in zip(indices, recs):
            if r["index"] != i:
                raise ValueError(f"record {i} holds image {r['index']}")
        return {"image": np.array([r["image"] for r in recs], np.uint8).reshape(-1, RESOLUTION, RESOLUTION, 3),
                "label": np.array([r["label"] for r in recs], np.int32)}
