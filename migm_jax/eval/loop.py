"""The evaluation of one sampler configuration, shared by the demo harness and the Inception FID.

Per configuration: its sampler is compiled once (on an untimed warm-up batch), then for each seed every
batch is sampled and decoded (timed, to completion) and reduced to feature moments on the devices
(`batch_stats`); the FID of a seed is taken against the reference statistics and the extractor adds its
per-image metric (accuracy or IS). Image i of seed s has class i % nclass and key fold_in(PRNGKey(s), i).

A `Journal` sees every finished (configuration, seed) and, every SAVE_EVERY batches, the running state
of an unfinished one; the file journal of the FID command makes runs resumable, the plain one keeps nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from tqdm import tqdm

from migm_jax.eval.batch_stats import Accumulator, batch_moments
from migm_jax.eval.features import Extractor
from migm_jax.eval.fid import Reference
from migm_jax.models.vqgan import VQGAN, VQGANConfig
from migm_jax.sampling.maskgit import MaskGITModels, build_sampler
from migm_jax.sampling.noise import image_keys
from migm_jax.sharding import batch_sharding, replicated

SAVE_EVERY = 10  # batches between two saves of an unfinished (configuration, seed)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What every configuration draws: `seeds` x `num_samples` images in batches of `batch_size`."""

    num_samples: int
    seeds: int
    batch_size: int
    nclass: int  # image i has class i % nclass

    @property
    def batches(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def labels(self, start: int) -> np.ndarray:
        """(batch_size,) int32 classes of images start, start + 1, ..."""
        return np.arange(start, start + self.batch_size, dtype=np.int32) % self.nclass


class Journal:
    """Keeps nothing: every (configuration, seed) runs from the start."""

    def finished(self, c, seed: int) -> dict | None:
        return None

    def resume(self, c, seed: int, dim: int) -> tuple[Accumulator, float, int]:
        """(accumulator, seconds, batches done) to continue (configuration, seed) from."""
        return Accumulator(dim), 0.0, 0

    def save_partial(self, c, seed: int, batches_done: int, acc: Accumulator, seconds: float) -> None:
        pass

    def add_row(self, row: dict) -> None:
        pass


@functools.lru_cache(maxsize=None)
def decoder(vqgan: VQGANConfig, dtype: str, mesh: Mesh):
    """Jitted VQGAN decode shared by every configuration: fn(vqgan params, codes (b, g, g)) -> (b, H, W, 3),
    batch-sharded over the mesh."""
    vq = VQGAN(vqgan, jnp.dtype(dtype))
    rep, data = replicated(mesh), batch_sharding(mesh)
    return jax.jit(lambda p, codes: vq.apply({"params": p}, codes, method=VQGAN.decode_code),
                   in_shardings=(rep, data), out_shardings=data)


@dataclasses.dataclass(frozen=True)
class Generator:
    """The MaskGIT pipeline on a mesh: params replicated, batches split over its devices."""

    models: MaskGITModels
    params: dict
    mesh: Mesh

    @classmethod
    def on(cls, models: MaskGITModels, params: dict, mesh: Mesh) -> "Generator":
        return cls(models, jax.device_put(params, replicated(mesh)), mesh)

    def sampler(self, c):
        return build_sampler(self.models, c.sampling, decode=False, mesh=self.mesh)


def generate_batch(generator: Generator, sample, labels: np.ndarray, keys: jax.Array) -> tuple[jax.Array, float]:
    """Samples and decodes one batch -> (decoded images (b, H, W, 3) float32 on the devices, seconds taken)."""
    decode = decoder(generator.models.vqgan, generator.models.vqgan_dtype, generator.mesh)
    t0 = time.perf_counter()
    codes = sample(generator.params, labels, keys)["codes"]
    images = jax.block_until_ready(decode(generator.params["vqgan"], codes))
    return images, time.perf_counter() - t0


def evaluate_configuration(c, generator: Generator, extractor: Extractor, reference: Reference,
                           plan: Plan, bar: tqdm, journal: Journal = Journal()) -> list[dict]:
    """One row {mode, steps, budget, seed, fid, <extractor metrics>, seconds_per_image} per seed.

    seconds_per_image = sampling and decoding time / images computed (a partial last batch's padding included).
    The sampler is compiled (warm-up batch) only when some seed still has to run.
    """
    sample, rows, warm = generator.sampler(c), [], False
    bs = plan.batch_size
    for seed in range(plan.seeds):
        row = journal.finished(c, seed)
        if row is None:
            if not warm:
                generate_batch(generator, sample, plan.labels(0), image_keys(jax.random.PRNGKey(0), 0, bs))
                warm = True
            row = run_seed(c, seed, generator, sample, extractor, reference, plan, bar, journal)
            journal.add_row(row)
        else:
            bar.update(plan.batches)
        rows.append(row)
    return rows


def run_batch(j: int, key: jax.Array, generator: Generator, sample, extractor: Extractor, plan: Plan,
              acc: Accumulator) -> float:
    """Batch j of a seed's run (PRNG `key`): sampled, decoded, reduced to moments added to `acc`; returns the
    sampling and decoding seconds."""
    start = j * plan.batch_size
    labels = plan.labels(start)
    images, seconds = generate_batch(generator, sample, labels, image_keys(key, start, plan.batch_size))
    acc.add(*batch_moments(extractor, generator.mesh, images, labels, min(plan.batch_size, plan.num_samples - start)))
    return seconds


def run_seed(c, seed: int, generator: Generator, sample, extractor: Extractor, reference: Reference, plan: Plan,
             bar: tqdm, journal: Journal) -> dict:
    """The row of one (configuration, seed), continued from where the journal left it."""
    acc, seconds, done = journal.resume(c, seed, extractor.net.feature_dim)
    bar.update(done)
    key = jax.random.PRNGKey(seed)
    for j in range(done, plan.batches):
        seconds += run_batch(j, key, generator, sample, extractor, plan, acc)
        bar.update()
        if (j + 1) % SAVE_EVERY == 0 and j + 1 < plan.batches:
            journal.save_partial(c, seed, j + 1, acc, seconds)
    return {"mode": c.mode, "steps": c.steps, "budget": c.budget, "seed": seed,
            "fid": reference.distance(*acc.stats.mean_cov()), **extractor.net.finish(acc.values()),
            "seconds_per_image": seconds / (plan.batches * plan.batch_size)}
