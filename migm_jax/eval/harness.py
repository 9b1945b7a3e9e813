"""Quality and cost of MaskGIT-Shortcut sampling against cheaper alternatives at the same base-model budget.

For each seed: vanilla N steps, and for each budget B: fewer_steps (vanilla with N = B), reuse (N steps,
B of them full, the others reuse the last feature) and shortcut (N steps, B full, the others run the
shortcut network). Every configuration draws `num_samples` images, image i with class i % nclass and
key fold_in(PRNGKey(seed), i); their FID (in the classifier's feature space) is taken against held-out
real images, their accuracy is the fraction the classifier assigns the requested class.

Generated images go through `TO_UINT8` (`migm_jax.images.clip_uint8`: [-1,1] clipped to uint8, the inverse
of how real images enter the models) before the classifier sees them; real images are the uint8 renders.
(Per-image min-max, what the sampling CLI saves, would move real images by ~21 levels on average and
keep even a perfect generator off the real-data floor.)
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from migm_jax.apps.maskgit import FAMILY
from migm_jax.eval.classifier import ClassifierConfig, FeatureClassifier, load_classifier
from migm_jax.eval.fid import FeatureStats, frechet_distance
from migm_jax.apps import maskgit as maskgit_app
from migm_jax.images import clip_uint8
from migm_jax.models.vqgan import VQGAN
from migm_jax.sampling.maskgit import MaskGITModels, MaskGITSampling, build_sampler
from migm_jax.sampling.noise import image_keys
from migm_jax.synthetic import render_batch
from migm_jax.weights import read_config

DEFAULT_STEPS = 16  # N when neither the weights' sampling config nor the caller gives one
TO_UINT8 = clip_uint8  # decoded float images (b, H, W, 3) -> the uint8 images that are judged
PER_CONFIGURATION = ("mode", "budget")  # sampler fields each configuration sets, ignored in the base settings


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """weights: a 'maskgit' weights dir with a shortcut; classifier: a 'classifier' weights dir;
    sampling: the settings every configuration shares (its steps = N; mode and budget are replaced)."""

    weights: str
    classifier: str
    sampling: MaskGITSampling
    budgets: tuple[int, ...] = (4, 6, 8)
    num_samples: int = 2000
    seeds: int = 3
    batch_size: int = 500
    dtype: str = "float32"  # compute dtype of transformer and shortcut


@dataclasses.dataclass(frozen=True)
class Configuration:
    """One evaluated sampler: `mode` as reported, `steps` run, `budget` of them with the base model."""

    mode: str  # vanilla | fewer_steps | reuse | shortcut
    steps: int
    budget: int
    sampling: MaskGITSampling


def base_sampling(configs: dict, steps: int | None = None) -> MaskGITSampling:
    """Shared sampler settings: MaskGITSampling fields from configs['sampling'] (the weights' recommended
    settings; its mode and budget are ignored), `steps` overriding theirs; DEFAULT_STEPS if neither has any."""
    recommended = dict(configs.get("sampling", {}))
    unknown = sorted(set(recommended) - {f.name for f in dataclasses.fields(MaskGITSampling)})
    if unknown:
        raise ValueError(f"unknown sampling setting(s) {', '.join(unknown)} in the weights' config.json")
    fields = {"steps": DEFAULT_STEPS, **{k: v for k, v in recommended.items() if k not in PER_CONFIGURATION}}
    return MaskGITSampling(**{**fields, **({"steps": steps} if steps else {})})


def configurations(base: MaskGITSampling, budgets: tuple[int, ...]) -> list[Configuration]:
    """vanilla N, then fewer_steps / reuse / shortcut for each budget; every sampler validated."""
    vanilla = dataclasses.replace(base, mode="vanilla", budget=None)
    out = [Configuration("vanilla", base.steps, base.steps, vanilla)]
    for b in budgets:
        out += [Configuration("fewer_steps", b, b, dataclasses.replace(vanilla, steps=b)),
                Configuration("reuse", base.steps, b, dataclasses.replace(base, mode="reuse", budget=b)),
                Configuration("shortcut", base.steps, b, dataclasses.replace(base, mode="shortcut", budget=b))]
    for c in out:
        c.sampling.validate()
    return out


def shown_path(path: str) -> str:
    """`path` as results record it: relative to the working directory when below it (no machine paths)."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def load_pipeline(weights_dir: str, dtype: str) -> tuple[MaskGITModels, dict]:
    """(models, float32 params) of a 'maskgit' weights dir holding transformer, shortcut and VQGAN."""
    family, configs = read_config(weights_dir)
    if family != FAMILY or "shortcut" not in configs:
        raise ValueError(f"{weights_dir} holds {family} weights ({', '.join(configs)}); the evaluation needs "
                         f"{FAMILY} weights with a shortcut")
    models, params, _ = maskgit_app.load_pipeline(weights_dir)
    return dataclasses.replace(models, dtype=dtype), params


def check_fit(models: MaskGITModels, clf: ClassifierConfig) -> None:
    """ValueError when the classifier cannot judge the generator's images or classes."""
    if models.vqgan.resolution != clf.resolution:
        raise ValueError(f"the generator makes {models.vqgan.resolution}px images, the classifier takes {clf.resolution}px")
    if clf.nclass > models.transformer.nclass:
        raise ValueError(f"the classifier has {clf.nclass} classes, the generator only {models.transformer.nclass}")


def pad_rows(x: np.ndarray, size: int) -> np.ndarray:
    """(n, ...) -> (size, ...), repeating the last row (n <= size)."""
    return np.pad(x, [(0, size - len(x))] + [(0, 0)] * (x.ndim - 1), mode="edge")


@dataclasses.dataclass(frozen=True)
class Judge:
    """The feature classifier, jitted once: judge(uint8 images (b, H, W, 3)) -> (features (b, D) float32,
    predicted classes (b,))."""

    cfg: ClassifierConfig
    params: dict
    apply: Callable

    @classmethod
    def load(cls, weights_dir: str) -> "Judge":
        cfg, params = load_classifier(weights_dir)
        net = FeatureClassifier(cfg)
        return cls(cfg, params, jax.jit(lambda p, x: net.apply({"params": p}, x)))

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, features = self.apply(self.params, jnp.asarray(images))
        return np.asarray(features), np.asarray(jnp.argmax(logits, axis=-1))


def decoder(models: MaskGITModels) -> Callable:
    """Jitted VQGAN decode shared by every configuration: fn(vqgan params, codes (b, g, g)) -> (b, H, W, 3)."""
    vq = VQGAN(models.vqgan, jnp.dtype(models.vqgan_dtype))
    return jax.jit(lambda p, codes: vq.apply({"params": p}, codes, method=VQGAN.decode_code))


def sample_and_classify(sample, decode, params: dict, labels: jax.Array, keys: jax.Array,
                        judge: Judge) -> tuple[np.ndarray, np.ndarray, float]:
    """One batch: sample codes and decode them (timed, to completion), convert with TO_UINT8, classify.

    labels (b,) int32, keys (b, 2) per-image keys -> (features (b, D), predicted classes (b,), seconds).
    """
    t0 = time.perf_counter()
    images = jax.block_until_ready(decode(params["vqgan"], sample(params, labels, keys)["codes"]))
    seconds = time.perf_counter() - t0
    return (*judge(TO_UINT8(np.asarray(images))), seconds)


def real_statistics(split: str, s: EvalSettings, judge: Judge, bar: tqdm) -> tuple[FeatureStats, float]:
    """Feature statistics and classifier accuracy of real images 0..num_samples-1 of `split`."""
    stats, correct = FeatureStats(judge.cfg.feature_dim), 0
    for start in range(0, s.num_samples, s.batch_size):
        images, labels = render_batch(np.arange(start, min(start + s.batch_size, s.num_samples)), split)
        features, predicted = judge(pad_rows(images, s.batch_size))
        stats.update(features[: len(labels)])
        correct += int(np.sum(predicted[: len(labels)] == labels))
        bar.update()
    return stats, correct / s.num_samples


def evaluate_configuration(c: Configuration, models: MaskGITModels, params: dict, decode, s: EvalSettings,
                           judge: Judge, reference: FeatureStats, bar: tqdm) -> list[dict]:
    """One row per seed for configuration `c`: its sampler (without the decoder) compiled once, one untimed
    warm-up batch, then every batch timed (sampling and decoding).

    seconds_per_image = sampling time / images computed (the padding of a partial last batch included).
    """
    bs, n, nclass = s.batch_size, s.num_samples, judge.cfg.nclass
    first_labels, first_keys = jnp.arange(bs, dtype=jnp.int32) % nclass, image_keys(jax.random.PRNGKey(0), 0, bs)
    sample = build_sampler(models, c.sampling, decode=False).lower(params, first_labels, first_keys).compile()
    sample_and_classify(sample, decode, params, first_labels, first_keys, judge)
    ref_mu, ref_cov = reference.mean_cov()
    rows = []
    for seed in range(s.seeds):
        key, stats, correct, seconds = jax.random.PRNGKey(seed), FeatureStats(judge.cfg.feature_dim), 0, 0.0
        starts = range(0, n, bs)
        for start in starts:
            count = min(bs, n - start)
            labels = np.arange(start, start + bs, dtype=np.int32) % nclass
            features, predicted, t = sample_and_classify(sample, decode, params, jnp.asarray(labels),
                                                         image_keys(key, start, bs), judge)
            stats.update(features[:count])
            correct += int(np.sum(predicted[:count] == labels[:count]))
            seconds += t
            bar.update()
        rows.append({"mode": c.mode, "steps": c.steps, "budget": c.budget, "seed": seed,
                     "fid": frechet_distance(*stats.mean_cov(), ref_mu, ref_cov), "accuracy": correct / n,
                     "seconds_per_image": seconds / (len(starts) * bs)})
    return rows


def evaluate(s: EvalSettings) -> dict:
    """Runs every configuration for every seed.

    Returns {'results': rows {mode, steps, budget, seed, fid, accuracy, seconds_per_image},
    'reference': {fid_train_vs_test, accuracy_test, num_samples}, 'settings': the settings, device, versions, date}.
    """
    configs = configurations(s.sampling, s.budgets)
    models, params = load_pipeline(s.weights, s.dtype)
    judge = Judge.load(s.classifier)
    check_fit(models, judge.cfg)
    batches = -(-s.num_samples // s.batch_size)
    with tqdm(total=batches * (2 + s.seeds * len(configs)), desc="evaluating", unit="batch") as bar:
        test, accuracy_test = real_statistics("test", s, judge, bar)
        train, _ = real_statistics("train", s, judge, bar)
        rows, decode = [], decoder(models)
        for c in configs:
            bar.set_postfix_str(f"{c.mode} N={c.steps} B={c.budget}")
            rows += evaluate_configuration(c, models, params, decode, s, judge, test, bar)
    return {
        "results": rows,
        "reference": {"fid_train_vs_test": frechet_distance(*train.mean_cov(), *test.mean_cov()),
                      "accuracy_test": accuracy_test, "num_samples": s.num_samples},
        "settings": {**dataclasses.asdict(s), "sampling": {k: v for k, v in dataclasses.asdict(s.sampling).items()
                                                           if k not in PER_CONFIGURATION},
                     "weights": shown_path(s.weights), "classifier": shown_path(s.classifier),
                     "image_conversion": TO_UINT8.__name__, "labels": "i % nclass",
                     "nclass": judge.cfg.nclass, "device": jax.devices()[0].device_kind, "jax_version": jax.__version__,
                     "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
    }


def summary(results: list[dict]) -> list[dict]:
    """Mean and std over seeds per (mode, steps, budget), in order of first appearance.

    std is the sample standard deviation (ddof=1), 0 for a single seed.
    """
    groups: dict[tuple, list[dict]] = {}
    for row in results:
        groups.setdefault((row["mode"], row["steps"], row["budget"]), []).append(row)
    out = []
    for (mode, steps, budget), rows in groups.items():
        entry = {"mode": mode, "steps": steps, "budget": budget, "seeds": len(rows)}
        for name in ("fid", "accuracy", "seconds_per_image"):
            values = np.array([r[name] for r in rows], np.float64)
            entry[f"{name}_mean"] = float(values.mean())
            entry[f"{name}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out.append(entry)
    return out
