"""Batches of images for the base-model tasks: from a dataset on disk (migm_jax.data) or, without `data_dir`,
synthetic shapes rendered into memory.

`batch(m)` is micro-batch m as global arrays split over the mesh's batch axes, a pure function of m
(the data position saved with checkpoints): epoch e visits the train images in permutation(seed, e).
Without `data_dir` the first `render_images` train images (and the validation images, from the
held-out 'test' split) are rendered once into host memory, in parallel processes when there are many.
Captions (a dataset's "caption" field, (n,) str) stay host arrays of this process's rows.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterator, Optional

import jax
import numpy as np
from jax.sharding import Mesh

from migm_jax.data import CLASS_NAMES, ImageReader, read_meta, render_batch
from migm_jax.sharding import batch_sharding
from migm_jax.training.config import TrainConfig
from migm_jax.training.dataset import SampleOrder

PARALLEL_ABOVE = 4096  # images; fewer are rendered in this process
CHUNK = 1024


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


def class_names(cfg: TrainConfig) -> list[str]:
    """The class names of the task's dataset: those of `data_dir`'s meta, or of the rendered shapes."""
    return read_meta(cfg.data_dir)["class_names"] if cfg.data_dir else list(CLASS_NAMES)


def encode_all(reader, encode: Callable[[np.ndarray], np.ndarray], chunk: int = CHUNK) -> dict:
    """Every image of `reader` through `encode` once, in chunks of min(chunk, n) images (the last padded, so
    one compiled shape): {'code': encode(images) stacked, 'label': (n,) int32}."""
    n, codes, labels = len(reader), [], []
    chunk = max(1, min(chunk, n))
    for a in range(0, n, chunk):
        part = reader.read(np.arange(a, min(a + chunk, n)))
        images = np.concatenate([part["image"], np.repeat(part["image"][-1:], chunk - len(part["label"]), axis=0)])
        codes.append(np.asarray(encode(images))[: len(part["label"])])
        labels.append(part["label"])
    return {"code": np.concatenate(codes), "label": np.concatenate(labels).astype(np.int32)}


class InMemory:
    """The read(indices) interface of ImageReader over host arrays (rendered images, or their codes)."""

    def __init__(self, data: dict):
        self.data = data

    def __len__(self) -> int:
        return len(self.data["label"])

    def read(self, indices: np.ndarray) -> dict:
        return {k: v[indices] for k, v in self.data.items()}


class ImageSource:
    """Batches {'image', 'label'}; with `encode`, {'code', 'label'}: every image encoded once up front
    (e.g. tokenized by a frozen VQGAN), so that steps read codes instead of re-encoding images."""

    def __init__(self, cfg: TrainConfig, mesh: Mesh, encode: Optional[Callable[[np.ndarray], np.ndarray]] = None):
        self.cfg, self.sharding = cfg, batch_sharding(mesh)
        n_val = cfg.val_batches * cfg.batch_size
        if cfg.data_dir:
            self.train, self.val = ImageReader(cfg.data_dir, cfg.train_split), ImageReader(cfg.data_dir, cfg.val_split)
        else:
            self.train, self.val = InMemory(render_split("train", cfg.render_images)), InMemory(render_split("test", n_val))
        if encode is not None:
            self.train, self.val = InMemory(encode_all(self.train, encode)), InMemory(encode_all(self.val, encode))
        self.order = SampleOrder(len(self.train), cfg.seed)
        self.n_val = min(n_val, len(self.val))

    def _to_global(self, local: dict) -> dict:
        return {k: v if v.dtype == object else jax.make_array_from_process_local_data(self.sharding, v)
                for k, v in local.items()}

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
