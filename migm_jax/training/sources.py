"""Where training batches come from: a TFDS trajectory dataset on disk, or the teacher online.

Both give `batch(m)`: the raw samples of micro-batch m as global arrays split over the mesh's batch
axes, a pure function of m (the data position saved with checkpoints), and `val_batches()`.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from migm_jax.sharding import batch_sharding, replicated
from migm_jax.training.config import ConfigError, TrainConfig
from migm_jax.training.dataset import SampleOrder, TrajectoryReader
from migm_jax.training.trajectories import capture_fn, gather_raw, samples_per_trajectory

PREFETCH = 2


class DiskSource:
    """Deterministically shuffled samples of a TFDS split; each process reads only its share, ahead of use."""

    def __init__(self, family, cfg: TrainConfig, mesh: Mesh):
        self.train = TrajectoryReader(cfg.data_dir, cfg.train_split, family.traj_fields)
        if self.train.steps != family.steps:
            raise ConfigError(f"{cfg.data_dir} holds {self.train.steps}-step trajectories, the config samples {family.steps}")
        self.cfg, self.sharding = cfg, batch_sharding(mesh)
        self.order = SampleOrder(self.train.n_samples, cfg.seed)
        self.pool, self.pending = ThreadPoolExecutor(PREFETCH), {}

    def _local(self, m: int):
        idx = self.order.indices(m, self.cfg.batch_size, jax.process_index(), jax.process_count())
        return self.pool.submit(self.train.read, idx)

    def _to_global(self, local: dict) -> dict:
        return {k: jax.make_array_from_process_local_data(self.sharding, v) for k, v in local.items()}

    def batch(self, m: int) -> dict:
        for ahead in range(m, m + PREFETCH + 1):
            if ahead not in self.pending:
                self.pending[ahead] = self._local(ahead)
        self.pending = {k: v for k, v in self.pending.items() if k >= m}
        return self._to_global(self.pending.pop(m).result())

    def val_batches(self) -> Iterator[dict]:
        """The first val_batches * batch_size samples of the val split, in order."""
        val = TrajectoryReader(self.cfg.data_dir, self.cfg.val_split, self.train.fields)
        b, p, count = self.cfg.batch_size, jax.process_index(), jax.process_count()
        for i in range(min(self.cfg.val_batches, val.n_samples // b)):
            per = b // count
            yield self._to_global(val.read(np.arange(i * b + p * per, i * b + (p + 1) * per)))


@functools.lru_cache(maxsize=None)
def select_fn(fields: tuple[str, ...], sharding) -> Callable:
    """jit(trajectory pool, sample indices) -> raw samples laid out as `sharding`."""
    return jax.jit(lambda pool, idx: gather_raw(pool, idx, fields), out_shardings=sharding)


class OnlineSource:
    """The teacher samples a pool of `online_images` images (2x trajectories) on device every
    `online_reuse` micro-batches; micro-batch m takes slice m % reuse of permutation(seed, pool)."""

    def __init__(self, family, cfg: TrainConfig, mesh: Mesh, teacher: dict, key: jax.Array):
        self.family, self.cfg, self.teacher = family, cfg, teacher
        self.n = 2 * cfg.online_images * samples_per_trajectory(family.steps)
        if cfg.online_reuse * cfg.batch_size > self.n:
            raise ConfigError(f"online_reuse x batch_size = {cfg.online_reuse * cfg.batch_size} exceeds the "
                              f"{self.n} samples of one pool; lower online_reuse or raise online_images")
        self.train_key, self.val_key = jax.random.split(key)
        self.pool_id, self.pool = None, None
        self.rep, self.split = replicated(mesh), batch_sharding(mesh)
        self.shards = mesh.shape["data"] * mesh.shape["fsdp"]

    def _pool(self, images: int, key: jax.Array) -> dict:
        """2 * images trajectories, split over the batch shards when they divide evenly."""
        sharding = self.split if 2 * images % self.shards == 0 else self.rep
        return capture_fn(self.family, images, sharding)(self.teacher, key)

    def batch(self, m: int) -> dict:
        pool_id, j = divmod(m, self.cfg.online_reuse)
        if pool_id != self.pool_id:
            self.pool_id = pool_id
            self.pool = self._pool(self.cfg.online_images, jax.random.fold_in(self.train_key, pool_id))
        b = self.cfg.batch_size
        idx = np.random.default_rng([self.cfg.seed, pool_id]).permutation(self.n)[j * b:(j + 1) * b]
        return select_fn(self.family.traj_fields, self.split)(self.pool, jax.device_put(jnp.asarray(idx, jnp.int32), self.rep))

    def val_batches(self) -> Iterator[dict]:
        """Every sample of one fixed pool of val_images images, in order (full batches)."""
        pool = self._pool(self.cfg.val_images, self.val_key)
        n, b = 2 * self.cfg.val_images * samples_per_trajectory(self.family.steps), self.cfg.batch_size
        for i in range(n // b):
            yield select_fn(self.family.traj_fields, self.split)(pool, jax.device_put(jnp.arange(i * b, (i + 1) * b, dtype=jnp.int32), self.rep))


def make_source(family, cfg: TrainConfig, mesh: Mesh, teacher: dict, key: jax.Array):
    return DiskSource(family, cfg, mesh) if cfg.data_dir else OnlineSource(family, cfg, mesh, teacher, key)
