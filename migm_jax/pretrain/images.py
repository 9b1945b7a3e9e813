"""Batches of images for the base-model tasks: from a dataset on disk (migm_jax.data) or rendered into memory.

`batch(m)` is micro-batch m as global arrays split over the mesh's batch axes, a pure function of m
(the data position saved with checkpoints): epoch e visits the train images in permutation(seed, e).
Every task reads a dataset on disk through `open_split` (records {'image', 'label', 'caption', ...} and
the dataset's `meta`). Without `data_dir` the first `render_images` synthetic train images (and the
validation images, from the held-out 'test' split) are rendered once into host memory, in parallel
processes when there are many.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterator, Optional

import jax
import numpy as np
from jax.sharding import Mesh

from migm_jax.sharding import batch_sharding
from migm_jax.data import CLASS_NAMES, RESOLUTION, ImageReader, render_batch
from migm_jax.training.config import TrainConfig
from migm_jax.training.dataset import SampleOrder

PARALLEL_ABOVE = 4096  # images; fewer are rendered in this process
CHUNK = 1024
FIELDS = ("image", "label")  # what a batch holds when the task does not prepare its own fields
RENDERED_META = {"resolution": RESOLUTION, "class_names": list(CLASS_NAMES)}


def open_split(data_dir: str, split: str):
    """The reader of one split of the dataset at `data_dir`: len(), `.meta` (resolution, class_names, ...)
    and read(indices) -> {'image': (n,R,R,3) uint8, 'label': (n,) int32, 'caption': (n,) str, ...}."""
    return ImageReader(data_dir, split)


def dataset_meta(cfg: TrainConfig) -> dict:
    """The meta of the train data: the dataset's on disk, or that of the rendered synthetic images."""
    return open_split(cfg.data_dir, cfg.train_split).meta if cfg.data_dir else RENDERED_META


def render_split(split: str, n: int) -> dict:
    """Images 0..n-1 of `split`: {'image': (n,H,W,3) uint8, 'label': (n,) int32}."""
    chunks = [np.arange(a, min(a + CHUNK, n)) for a in range(0, n, CHUNK)]
    if n <= PARALLEL_ABOVE:
        parts = [render_batch(c, split) for c in chunks]
    else:
        # spawned workers: forking a process that already runs JAX threads can deadlock
        with ProcessPoolExecutor(min(16, os.cpu_count() or 1), mp_context=multiprocessing.get_context("spawn")) as pool:
            parts = list(pool.map(render_batch, chunks, [split] * len(chunks)))
    return {"image": np.concatenate([p[0] for p in parts]), "label": np.concatenate([p[1] for p in parts]).astype(np.int32)}


def prepare_all(reader, prepare: Callable[[dict], dict], chunk: int = CHUNK) -> dict:
    """Every record of `reader` through `prepare` once, in chunks of min(chunk, n) records (the last one
    padded by repeating its last record, so one compiled shape): the fields prepare returns, stacked.
    prepare: records {'image', 'label', ...} of one chunk -> {name: (chunk, ...) host array}."""
    n, parts = len(reader), []
    chunk = max(1, min(chunk, n))
    for a in range(0, n, chunk):
        records = reader.read(np.arange(a, min(a + chunk, n)))
        got = len(records["image"])
        padded = {k: np.concatenate([v, np.repeat(v[-1:], chunk - got, axis=0)]) for k, v in records.items()}
        parts.append({k: np.asarray(v)[:got] for k, v in prepare(padded).items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def captions_of(records: dict, class_names) -> list[str]:
    """The prompt of each record: its caption verbatim, or for a record without one (a class dataset:
    no or an empty caption) its class name."""
    labels = records["label"]
    out = []
    for caption, label in zip(records.get("caption", [""] * len(labels)), labels):
        caption = str(caption)
        if not caption.strip():
            if not class_names:
                raise ValueError("a record has no caption and the dataset's meta no class_names to stand in for it")
            caption = class_names[int(label)]
        out.append(caption)
    return out


def read_captions(reader, chunk: int = CHUNK) -> list[str]:
    """`captions_of` every record of `reader`, in order."""
    names = reader.meta.get("class_names")
    return [c for a in range(0, len(reader), chunk)
            for c in captions_of(reader.read(np.arange(a, min(a + chunk, len(reader)))), names)]


class InMemory:
    """The reader interface of `open_split` over host arrays (rendered images, or their codes)."""

    def __init__(self, data: dict, meta: Optional[dict] = None):
        self.data, self.meta = data, meta if meta is not None else {}

    def __len__(self) -> int:
        return len(next(iter(self.data.values())))

    def read(self, indices: np.ndarray) -> dict:
        return {k: v[indices] for k, v in self.data.items()}


class ImageSource:
    """Batches {'image', 'label'}; with `prepare` (see `prepare_all`), the fields it makes of the records,
    computed once up front for every record (e.g. codes of a frozen VQ tokenizer, token ids of captions),
    so that steps read them instead of re-encoding images."""

    def __init__(self, cfg: TrainConfig, mesh: Mesh, prepare: Optional[Callable[[dict], dict]] = None):
        self.cfg, self.sharding = cfg, batch_sharding(mesh)
        n_val = cfg.val_batches * cfg.batch_size
        if cfg.data_dir:
            self.train, self.val = open_split(cfg.data_dir, cfg.train_split), open_split(cfg.data_dir, cfg.val_split)
        else:
            self.train = InMemory(render_split("train", cfg.render_images), RENDERED_META)
            self.val = InMemory(render_split("test", n_val), RENDERED_META)
        self.fields = FIELDS
        if prepare is not None:
            self.train, self.val = (InMemory(prepare_all(r, prepare), r.meta) for r in (self.train, self.val))
            self.fields = tuple(self.train.data)
        self.order = SampleOrder(len(self.train), cfg.seed)
        self.n_val = min(n_val, len(self.val))

    def _to_global(self, local: dict) -> dict:
        return {k: jax.make_array_from_process_local_data(self.sharding, local[k]) for k in self.fields}

    def batch(self, m: int) -> dict:
        idx = self.order.indices(m, self.cfg.batch_size, jax.process_index(), jax.process_count())
        return self._to_global(self.train.read(idx))

    def val_batches(self) -> Iterator[dict]:
        """The first val_batches * batch_size validation images, in order, in full batches."""
        b, p, count = self.cfg.batch_size, jax.process_index(), jax.process_count()
        per = b // count
        for i in range(self.n_val // b):
            yield self._to_global(self.val.read(np.arange(i * b + p * per, i * b + (p + 1) * per)))

    def val_images(self, n: int) -> dict:
        """The first n validation images (host arrays), e.g. for reconstruction previews."""
        return self.val.read(np.arange(min(n, len(self.val))))
