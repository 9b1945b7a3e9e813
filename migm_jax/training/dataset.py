"""Trajectory datasets on disk: TFDS in array_record format, written and read without TensorFlow.

Layout: `<data_dir>/migm_trajectories/1.0.0/` with the TFDS metadata (dataset_info.json,
features.json), one shard set per split, and `migm_meta.json` (family, steps, teacher configs).
One record per (trajectory, step): record r = trajectory r // N, step r % N, holding that step's
feature (T, C) bfloat16 plus the trajectory's ids/order/label/half (small, repeated per step), so a
training sample (t, s) is two random reads (records tN+s and tN+s+1) with `tfds.data_source`.

Sample order is a deterministic global shuffle: epoch e visits the samples in
permutation(seed, e); micro-batch m takes the next `batch` samples of that endless sequence, and
process p of P reads its contiguous 1/P of them. The data position is m.
"""

from __future__ import annotations

import json
import os

import ml_dtypes  # noqa: F401  registers the 'bfloat16' dtype name that TFDS reads back from the metadata
import numpy as np

from migm_jax.data.records import import_tfds

NAME, VERSION = "migm_trajectories", "1.0.0"
META_FILE = "migm_meta.json"
TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"


def version_dir(data_dir: str) -> str:
    return os.path.join(data_dir, NAME, VERSION)


def _tfds():
    return import_tfds("trajectory datasets")


def record_features(traj: dict):
    """TFDS FeaturesDict of one record, from a batch of trajectories (see trajectories.py)."""
    tfds = _tfds()
    f = tfds.features
    spec = {"feat": f.Tensor(shape=traj["feat"].shape[2:], dtype=traj["feat"].dtype, encoding=f.Encoding.BYTES),
            "step": np.int32, "traj": np.int64}
    for name, value in traj.items():
        if name != "feat":
            value = np.asarray(value)
            spec[name] = f.Tensor(shape=value.shape[1:], dtype=value.dtype, encoding=f.Encoding.BYTES) if value.ndim > 1 else value.dtype
    return f.FeaturesDict(spec)


def shard_plan(n_traj: int, traj_per_shard: int, process_count: int) -> list[list[tuple[int, int]]]:
    """Per process, its shards as (first trajectory, count); process p owns trajectories
    [p n/P, (p+1) n/P) in order, so global record order is trajectory order."""
    if n_traj % process_count:
        raise ValueError(f"{n_traj} trajectories cannot be split over {process_count} processes")
    per = n_traj // process_count
    return [[(p * per + a, min(traj_per_shard, per - a)) for a in range(0, per, traj_per_shard)]
            for p in range(process_count)]


class TrajectoryWriter:
    """Writes this process's trajectories of one split, in order, as array_record shards.

    `write(traj)` takes batches of numpy trajectories; after every process has closed its writer,
    process 0 calls `finalize(meta)` to write the TFDS metadata (splits of other runs are kept).
    """

    def __init__(self, data_dir: str, split: str, n_traj: int, steps: int, traj_per_shard: int = 64,
                 process_index: int = 0, process_count: int = 1):
        self.dir, self.split, self.steps = version_dir(data_dir), split, steps
        self.plan = shard_plan(n_traj, traj_per_shard, process_count)
        self.n_shards = sum(len(s) for s in self.plan)
        first = sum(len(s) for s in self.plan[:process_index])
        self.mine = [(first + i, t0, n) for i, (t0, n) in enumerate(self.plan[process_index])]
        self.features, self.writer, self.left, self.next_traj = None, None, 0, None
        os.makedirs(self.dir, exist_ok=True)

    def _open_next(self) -> None:
        from array_record.python.array_record_module import ArrayRecordWriter

        shard, t0, n = self.mine.pop(0)
        name = f"{NAME}-{self.split}.array_record-{shard:05d}-of-{self.n_shards:05d}"
        self.writer, self.left, self.next_traj = ArrayRecordWriter(os.path.join(self.dir, name), "group_size:1"), n, t0

    def write(self, traj: dict) -> None:
        traj = {k: np.asarray(v) for k, v in traj.items()}
        if self.features is None:
            self.features = record_features(traj)
        for i in range(traj["feat"].shape[0]):
            if self.left == 0:
                if not self.mine:
                    raise ValueError("more trajectories written than announced")
                self._open_next()
            for s in range(self.steps):
                rec = {k: v[i] for k, v in traj.items() if k != "feat"}
                rec.update(feat=traj["feat"][i, s], step=np.int32(s), traj=np.int64(self.next_traj))
                self.writer.write(self.features.serialize_example(rec))
            self.left, self.next_traj = self.left - 1, self.next_traj + 1
            if self.left == 0:
                self.writer.close()

    def close(self) -> None:
        if self.left or self.mine:
            raise ValueError(f"split {self.split}: fewer trajectories written than announced")

    def finalize(self, meta: dict) -> None:
        """Process 0, after every writer closed: writes dataset_info.json / features.json for all splits
        and migm_meta.json (`meta` with this split's entry in meta['splits']; other splits are kept)."""
        tfds = _tfds()
        lengths = [n * self.steps for shards in self.plan for _, n in shards]
        splits = {self.split: tfds.core.SplitInfo(name=self.split, shard_lengths=lengths, num_bytes=0)}
        meta_path = os.path.join(self.dir, META_FILE)
        if os.path.exists(os.path.join(self.dir, "dataset_info.json")):
            old = tfds.builder_from_directory(self.dir).info
            with open(meta_path) as f:
                old_meta = json.load(f)
            if old.features.to_json_content() != self.features.to_json_content() or old_meta["steps"] != meta["steps"]:
                raise ValueError(f"{self.dir} holds splits with other record shapes or steps; use another data_dir")
            splits = {**{s.name: s for s in old.splits.values()}, **splits}
            meta = {**meta, "splits": {**old_meta["splits"], **meta["splits"]}}
        tfds.folder_dataset.write_metadata(data_dir=self.dir, features=self.features, split_infos=list(splits.values()),
                                           filename_template=TEMPLATE, check_data=False)
        with open(meta_path, "w") as f:
            json.dump(meta, f, indent=2)


def read_meta(data_dir: str) -> dict:
    path = os.path.join(version_dir(data_dir), META_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no trajectory dataset at {data_dir} ({NAME}/{VERSION}/{META_FILE} missing); "
                                "write one with python -m migm_jax.training.makedata")
    with open(path) as f:
        return json.load(f)


class TrajectoryReader:
    """Random access to the training samples of one split. `read(indices)` -> numpy raw samples."""

    def __init__(self, data_dir: str, split: str, fields: tuple[str, ...] = ("ids", "order")):
        self.meta = read_meta(data_dir)
        self.steps, self.fields = self.meta["steps"], fields
        tfds = _tfds()
        builder = tfds.builder_from_directory(version_dir(data_dir))
        if split not in builder.info.splits:
            raise ValueError(f"{data_dir} has no split {split!r} (has {', '.join(builder.info.splits)})")
        self.source = tfds.data_source(f"{NAME}:{VERSION}", data_dir=data_dir, split=split)
        self.n_traj = len(self.source) // self.steps
        self.n_samples = self.n_traj * (self.steps - 1)

    def read(self, indices: np.ndarray) -> dict:
        """Raw samples (see trajectories.py) for global sample indices (b,)."""
        per = self.steps - 1
        t, s = np.divmod(np.asarray(indices, np.int64), per)
        first = t * self.steps + s
        recs = self.source.__getitems__(np.concatenate([first, first + 1]).tolist())
        b = len(first)
        for r, ti, si in zip(recs[:b], t, s):
            if r["traj"] != ti or r["step"] != si:
                raise ValueError(f"record of trajectory {ti} step {si} holds trajectory {r['traj']} step {r['step']}")
        raw = {"prev_feat": np.stack([r["feat"] for r in recs[:b]]), "tgt_feat": np.stack([r["feat"] for r in recs[b:]]),
               "step": s.astype(np.int32)}
        raw.update({k: np.stack([r[k] for r in recs[:b]]) for k in self.fields})
        return raw


class SampleOrder:
    """The endless shuffled sequence of n sample indices: epoch e visits permutation(seed, e)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.cache = n, seed, {}

    def epoch(self, e: int) -> np.ndarray:
        if e not in self.cache:
            self.cache = {e: np.random.default_rng([self.seed, e]).permutation(self.n)}
        return self.cache[e]

    def indices(self, micro_batch: int, batch: int, process_index: int = 0, process_count: int = 1) -> np.ndarray:
        """This process's contiguous share of the `batch` global indices of micro-batch `micro_batch`."""
        per = batch // process_count
        pos = micro_batch * batch + process_index * per + np.arange(per, dtype=np.int64)
        return np.asarray([self.epoch(int(p // self.n))[p % self.n] for p in pos], np.int64)
