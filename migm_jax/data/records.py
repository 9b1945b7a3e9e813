"""The one record schema of every image dataset, on disk as TFDS array_record, written and read without TensorFlow.

Layout: `<data_dir>/migm_images/1.0.0/` holds the TFDS metadata (dataset_info.json, features.json), one
shard set per split, and meta.json: the builder's name, resolution R, class_names, the builder's own keys,
and per split its number of images (+ the builder's split keys). Record i of a split: image (R, R, 3)
uint8 (raw bytes), label int32 (class id), caption text (empty for class datasets), index int64 (= i).
`tfds.data_source("migm_images:1.0.0", data_dir=data_dir, split=...)` reads it too.
"""

from __future__ import annotations

import json
import os
from typing import Iterable, Optional

import numpy as np
from tqdm import tqdm

from migm_jax.files import read_json, write_files_atomically

NAME, VERSION = "migm_images", "1.0.0"
META_FILE = "meta.json"
TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
BUILD_HINT = "build one with python -m migm_jax.data {shapes,emoji,fashion} --out DIR (see --help)"


def dataset_dir(data_dir: str) -> str:
    """The folder of the dataset written with --out `data_dir` (its TFDS files, meta.json, builder extras)."""
    return os.path.join(data_dir, NAME, VERSION)


def import_tfds(what: str = "image datasets on disk"):
    """The tensorflow_datasets module, or one ImportError line naming `what` needs it and the extra to install."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ImportError(f"{what} need tensorflow-datasets and array-record: pip install 'migm-jax[data]'") from None
    return tfds


def record_features(resolution: int):
    """TFDS FeaturesDict of one record: image (R, R, 3) uint8 bytes, label int32, caption text, index int64."""
    f = import_tfds().features
    return f.FeaturesDict({
        "image": f.Tensor(shape=(resolution, resolution, 3), dtype=np.uint8, encoding=f.Encoding.BYTES),
        "label": np.int32, "caption": f.Text(), "index": np.int64})


def write_json_atomically(path: str, content) -> None:
    write_files_atomically([(path, lambda f: f.write(json.dumps(content, indent=2).encode()))])


def _merged_meta(out: str, meta: dict) -> dict:
    """`meta` with the splits already written in `out`; ValueError when `out` holds another dataset."""
    for key in ("builder", "resolution", "class_names"):
        if key not in meta:
            raise ValueError(f"dataset meta needs the key {key!r}")
    path = os.path.join(out, META_FILE)
    if not os.path.exists(path):
        return {**meta, "splits": {}}
    old = read_json(path)
    keys = sorted(k for k in {*meta, *old} - {"splits"} if meta.get(k) != old.get(k))
    if keys:
        what = f"its {', '.join(keys)} differ" if old["builder"] == meta["builder"] else f"not {meta['builder']}"
        raise ValueError(f"{out} holds another dataset ({old['builder']}, {what}); remove it or write to another --out")
    return {**meta, "splits": old["splits"]}


def _write_shard(path: str, features, records, first: int, count: int, resolution: int, bar) -> None:
    """The next `count` records (image, label, caption), with index first.., into `path` (via a temporary file)."""
    from array_record.python.array_record_module import ArrayRecordWriter

    writer = ArrayRecordWriter(path + ".tmp", "group_size:1")
    for index in range(first, first + count):
        record = next(records, None)
        if record is None:
            raise ValueError(f"only {index} records given, fewer than announced")
        image, label, caption = record
        if image.shape != (resolution, resolution, 3) or image.dtype != np.uint8:
            raise ValueError(f"record {index} holds a {image.dtype} image of shape {image.shape}; "
                             f"expected uint8 ({resolution}, {resolution}, 3)")
        writer.write(features.serialize_example({"image": image, "label": np.int32(label), "caption": caption,
                                                 "index": np.int64(index)}))
        bar.update(1)
    writer.close()
    os.replace(path + ".tmp", path)


def write_split(data_dir: str, split: str, records: Iterable[tuple[np.ndarray, int, str]], n_records: int,
                meta: dict, split_meta: Optional[dict] = None, records_per_shard: int = 4096,
                progress: bool = True) -> str:
    """Writes the `n_records` records (image (R, R, 3) uint8, label, caption) of `split` as array_record shards
    of `records_per_shard`, then the TFDS metadata and meta.json: `meta` (builder, resolution, class_names and
    the builder's keys, equal to those of the splits already there) with splits[split] = {"images": n,
    **split_meta}. Splits written before are kept. Returns the dataset folder."""
    if n_records < 1 or records_per_shard < 1:
        raise ValueError(f"need n_records >= 1 and records_per_shard >= 1, got {n_records} and {records_per_shard}")
    tfds = import_tfds()
    out = dataset_dir(data_dir)
    meta = _merged_meta(out, meta)
    os.makedirs(out, exist_ok=True)

    resolution = meta["resolution"]
    features = record_features(resolution)
    firsts = range(0, n_records, records_per_shard)
    names = [f"{NAME}-{split}.array_record-{s:05d}-of-{len(firsts):05d}" for s in range(len(firsts))]
    lengths = [min(records_per_shard, n_records - first) for first in firsts]
    records = iter(records)
    with tqdm(total=n_records, desc=f"{meta['builder']} {split}", unit="img", disable=not progress) as bar:
        for name, first, count in zip(names, firsts, lengths):
            _write_shard(os.path.join(out, name), features, records, first, count, resolution, bar)
    if next(records, None) is not None:
        raise ValueError(f"split {split}: more than the {n_records} records announced")

    size = sum(os.path.getsize(os.path.join(out, name)) for name in names)
    splits = {split: tfds.core.SplitInfo(name=split, shard_lengths=lengths, num_bytes=size)}
    if os.path.exists(os.path.join(out, "dataset_info.json")):
        splits = {**{s.name: s for s in tfds.builder_from_directory(out).info.splits.values()}, **splits}
    tfds.folder_dataset.write_metadata(data_dir=out, features=features, split_infos=list(splits.values()),
                                       filename_template=TEMPLATE, check_data=False)
    meta["splits"] = {**meta["splits"], split: {"images": n_records, **(split_meta or {})}}
    write_json_atomically(os.path.join(out, META_FILE), meta)
    for stale in os.listdir(out):  # shards of an earlier write of this split with another shard count
        if stale.startswith(f"{NAME}-{split}.array_record-") and stale not in names:
            os.remove(os.path.join(out, stale))
    return out


def read_meta(data_dir: str) -> dict:
    """The dataset's meta.json (resolution, class_names, splits, builder keys)."""
    path = os.path.join(dataset_dir(data_dir), META_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no image dataset at {data_dir} ({NAME}/{VERSION}/{META_FILE} missing); {BUILD_HINT}")
    return read_json(path)


class ImageReader:
    """Random access to one written split. `len(reader)` records; `reader.meta` the dataset's meta.json;
    `reader.dir` its folder; `read(indices)` -> {"image": (n, R, R, 3) uint8, "label": (n,) int32,
    "caption": (n,) object array of str}."""

    def __init__(self, data_dir: str, split: str):
        self.meta, self.dir = read_meta(data_dir), dataset_dir(data_dir)
        if split not in self.meta["splits"]:
            raise ValueError(f"{data_dir} has no split {split!r} (has {', '.join(self.meta['splits'])}); "
                             f"see python -m migm_jax.data {self.meta['builder']} --help")
        self.resolution = self.meta["resolution"]
        self.source = import_tfds().data_source(f"{NAME}:{VERSION}", data_dir=data_dir, split=split)

    def __len__(self) -> int:
        return len(self.source)

    def read(self, indices) -> dict:
        """Images, labels and captions of the records `indices` (n,)."""
        indices = np.asarray(indices, np.int64).reshape(-1)
        recs = self.source.__getitems__(indices.tolist())
        for i, r in zip(indices, recs):
            if r["index"] != i:
                raise ValueError(f"record {i} holds image {r['index']}")
        r = self.resolution
        captions = np.empty(len(recs), object)
        captions[:] = [rec["caption"].decode() if isinstance(rec["caption"], bytes) else str(rec["caption"])
                       for rec in recs]
        return {"image": np.array([rec["image"] for rec in recs], np.uint8).reshape(-1, r, r, 3),
                "label": np.array([rec["label"] for rec in recs], np.int32), "caption": captions}
