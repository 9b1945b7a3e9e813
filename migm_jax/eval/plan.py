"""What an evaluation runs: the sampler configurations compared at each budget, and how many images in which batches.

For N steps and each budget B (full, i.e. base-model, steps):
  vanilla      N steps, all full (once, the reference of every budget);
  fewer_steps  vanilla with N = B;
  reuse        N steps, B full (the refresh plan), the others reuse the last feature;
  ml_cache     N steps (DiMOO only, the original's baseline): B full steps, the N - B others recompute only the
               (1 - cache_ratio) least confident positions (`ml_cache_settings` places the B full steps);
  shortcut     N steps, B full, the others run the shortcut network.
Every configuration draws `num_samples` images per seed, image i with condition i (the family's: class
i % nclass or caption i % n_captions) and key fold_in(PRNGKey(seed), i), so configurations of one seed see the
same noise and their samples can be compared image by image.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from migm_jax.sampling.dimoo import SAMPLE_DEFAULTS
from migm_jax.sampling.schedules import FULL

PER_CONFIGURATION = ("mode", "budget", "warmup_ratio", "refresh_interval")  # set by each configuration
MODES = ("vanilla", "fewer_steps", "reuse", "ml_cache", "shortcut")
DEFAULT_BATCH = {"cpu": 16}  # images per batch at most, by backend; others (GPU, TPU) DEFAULT_BATCH_ACCELERATOR
DEFAULT_BATCH_ACCELERATOR = 500
ORIGINAL_CACHE = (64, 0.3, 5)  # the original's ML-Cache: N = 64, warm-up ratio 0.3, refresh every 5 steps


@dataclasses.dataclass(frozen=True)
class Configuration:
    """One evaluated sampler: `mode` as reported (MODES), `steps` run, `budget` of them with the base model."""

    mode: str
    steps: int
    budget: int
    sampling: object  # the family's sampler settings (MaskGITSampling | DiMOOSampling)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What every configuration draws: `seeds` x `num_samples` images in batches of `batch_size`."""

    num_samples: int
    seeds: int
    batch_size: int

    @property
    def batches(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def count(self, j: int) -> int:
        """Real (unpadded) images in batch j."""
        return min(self.batch_size, self.num_samples - j * self.batch_size)


def default_batch_size(num_samples: int, devices: int, backend: str) -> int:
    """The fewest batches of at most DEFAULT_BATCH[backend] images (DEFAULT_BATCH_ACCELERATOR off CPU) that hold
    `num_samples`, made equal and rounded up to a multiple of `devices`: 50 samples on CPU are 4 batches of 13,
    2000 on a GPU 4 of 500 (a batch of 500 gains nothing per image on CPU, and its memory grows with it)."""
    cap = max(DEFAULT_BATCH.get(backend, DEFAULT_BATCH_ACCELERATOR), devices)
    per_batch = -(-num_samples // -(-num_samples // cap))
    return -(-per_batch // devices) * devices


def check_budgets(budgets: list[int] | None, steps: int, defaults: tuple[int, ...]) -> tuple[int, ...]:
    """The budgets to evaluate: the given ones (each in 2..steps) or those of `defaults` in 2..steps-1."""
    if budgets is None:
        kept = tuple(sorted({b for b in defaults if 2 <= b < steps}))
        if not kept:
            raise ValueError(f"none of the default budgets {' '.join(map(str, defaults))} is in 2..{steps - 1} "
                             f"for {steps} steps; give --budgets")
        return kept
    bad = [b for b in budgets if not 2 <= b <= steps]
    if bad:
        raise ValueError(f"--budgets must be in 2..steps ({steps}), got {bad[0]}")
    return tuple(sorted(set(budgets)))


def base_sampling(cls, configs: dict, steps: int | None, default_steps: int):
    """Shared sampler settings of class `cls`: its fields from configs['sampling'] (the weights' recommended
    settings; mode and sample.py's defaults such as the budget are ignored), `steps` overriding theirs;
    `default_steps` if neither has any."""
    recommended = dict(configs.get("sampling", {}))
    unknown = sorted(set(recommended) - {f.name for f in dataclasses.fields(cls)} - set(SAMPLE_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown sampling setting(s) {', '.join(unknown)} in the weights' config.json")
    fields = {"steps": default_steps, **{k: v for k, v in recommended.items() if k not in ("mode", *SAMPLE_DEFAULTS)}}
    return cls(**{**fields, **({"steps": steps} if steps else {})})


def ml_cache_settings(steps: int, budget: int) -> tuple[float, int]:
    """(warmup_ratio, refresh_interval) whose ML-Cache plan runs exactly `budget` of `steps` steps in full.

    ML-Cache runs steps 0..W in full (W = int(steps * warmup_ratio)), then every k-th (W + k, W + 2k, ...),
    `budget` = W + 1 + (steps - 1 - W) // k full steps in all. W is chosen so that the warm-up holds the
    original's share of the full steps (its defaults at N = 64: steps 0..19 plus 24, 29, ..., 59, 20 of 28),
    k so that the refreshes are spread evenly over the steps after the warm-up (interval nearest
    (steps - 1 - W) / (refreshes + 1/2)). At N = 64, B = 28 this is the original's 0.3 and 5. The returned
    ratio is (W + 1/2) / steps, which `int(steps * ratio)` maps back to W.
    """
    if not 2 <= budget <= steps:
        raise ValueError(f"budget must be in 2..steps ({steps}), got {budget}")
    n, ratio, interval = ORIGINAL_CACHE
    share = (int(n * ratio) + 1) / (int(n * ratio) + 1 + (n - 1 - int(n * ratio)) // interval)
    best = None
    for w in range(budget):  # warm-up steps 0..w, then budget - w - 1 refreshes
        refreshes, rest = budget - w - 1, steps - 1 - w
        if refreshes == 0:
            ks = [rest + 1] if rest >= 0 else []  # no refresh fits after the warm-up
        else:
            ks = [k for k in range(1, rest + 1) if rest // k == refreshes]
        for k in ks:
            target = rest / (refreshes + 0.5)
            score = (abs((w + 1) / budget - share), abs(k - target), k)
            if best is None or score < best[0]:
                best = (score, w, k)
    _, w, k = best
    return (w + 0.5) / steps, k


def configurations(base, budgets: tuple[int, ...], modes: tuple[str, ...] = MODES) -> list[Configuration]:
    """vanilla N, then per budget the budget modes among `modes` (in MODES order); every sampler validated.
    `base`: the shared settings (steps = N); 'ml_cache' needs DiMOO settings (cache_ratio, warmup_ratio, ...)."""
    vanilla = dataclasses.replace(base, mode="vanilla", budget=None)
    out = [Configuration("vanilla", base.steps, base.steps, vanilla)] if "vanilla" in modes else []
    for b in budgets:
        for mode in (m for m in MODES[1:] if m in modes):
            if mode == "fewer_steps":
                out.append(Configuration(mode, b, b, dataclasses.replace(vanilla, steps=b)))
            elif mode == "ml_cache":
                warmup, interval = ml_cache_settings(base.steps, b)
                out.append(Configuration(mode, base.steps, b, dataclasses.replace(
                    vanilla, mode="cache", warmup_ratio=warmup, refresh_interval=interval)))
            else:
                out.append(Configuration(mode, base.steps, b, dataclasses.replace(base, mode=mode, budget=b)))
    for c in out:
        c.sampling.validate()
        if c.mode == "ml_cache" and int(np.sum(c.sampling.kinds() == FULL)) != c.budget:
            raise AssertionError(f"ML-Cache plan of {c.sampling} has not {c.budget} full steps")
    return out


def shown_path(path: str | None) -> str | None:
    """`path` as results record it: relative to the working directory when below it (no machine paths)."""
    if path is None:
        return None
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel
