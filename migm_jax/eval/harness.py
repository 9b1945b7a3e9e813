"""Quality and cost of MaskGIT-Shortcut sampling against cheaper alternatives at the same base-model budget.

For each seed: vanilla N steps, and for each budget B: fewer_steps (vanilla with N = B), reuse (N steps,
B of them full, the others reuse the last feature) and shortcut (N steps, B full, the others run the
shortcut network). Every configuration draws `num_samples` images, image i with class i % nclass and
key fold_in(PRNGKey(seed), i); their FID (in the classifier's feature space) is taken against held-out
real images, their accuracy is the fraction the classifier assigns the requested class.

Generated images go through `migm_jax.images.clip_uint8` ([-1,1] clipped to uint8, the inverse of how real
images enter the models) before the classifier sees them; real images are the uint8 renders.
(Per-image min-max, what the sampling CLI saves, would move real images by ~21 levels on average and
keep even a perfect generator off the real-data floor.) The per-configuration loop is `loop`'s, the one the
Inception FID (`fid_eval`) runs too.
"""

from __future__ import annotations

import dataclasses
import datetime
import os

import jax
import numpy as np
from tqdm import tqdm

from migm_jax.apps import maskgit as maskgit_app
from migm_jax.apps.maskgit import FAMILY
from migm_jax.eval.batch_stats import Accumulator, batch_moments, check_batch_size, on_mesh, pad_rows
from migm_jax.eval.classifier import ClassifierConfig
from migm_jax.eval.features import Extractor, classifier_extractor
from migm_jax.eval.fid import FeatureStats, Reference, frechet_distance
from migm_jax.eval.loop import Generator, Plan, evaluate_configuration
from migm_jax.sampling.maskgit import MaskGITModels, MaskGITSampling
from migm_jax.sharding import make_mesh
from migm_jax.data.shapes import render_batch
from migm_jax.weights import read_config

DEFAULT_STEPS = 16  # N when neither the weights' sampling config nor the caller gives one
PER_CONFIGURATION = ("mode", "budget")  # sampler fields each configuration sets, ignored in the base settings
ROW_KEYS = ("mode", "steps", "budget", "seed")  # what identifies a result row; its other keys are metrics


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
    attention: str | None = None  # their attention_impl: None (exact) | 'cudnn' | 'xla'


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


def load_pipeline(weights_dir: str, dtype: str, attention: str | None = None) -> tuple[MaskGITModels, dict]:
    """(models, float32 params) of a 'maskgit' weights dir holding transformer, shortcut and VQGAN."""
    family, configs = read_config(weights_dir)
    if family != FAMILY or "shortcut" not in configs:
        raise ValueError(f"{weights_dir} holds {family} weights ({', '.join(configs)}); the evaluation needs "
                         f"{FAMILY} weights with a shortcut")
    models, params, _ = maskgit_app.load_pipeline(weights_dir)
    return dataclasses.replace(models, dtype=dtype, attention_impl=attention), params


def check_fit(models: MaskGITModels, clf: ClassifierConfig) -> None:
    """ValueError when the classifier cannot judge the generator's images or classes."""
    if models.vqgan.resolution != clf.resolution:
        raise ValueError(f"the generator makes {models.vqgan.resolution}px images, the classifier takes {clf.resolution}px")
    if clf.nclass > models.transformer.nclass:
        raise ValueError(f"the classifier has {clf.nclass} classes, the generator only {models.transformer.nclass}")


def real_statistics(split: str, s: EvalSettings, extractor: Extractor, mesh, bar: tqdm) -> tuple[FeatureStats, float]:
    """Feature statistics and classifier accuracy of real images 0..num_samples-1 of `split`."""
    acc = Accumulator(extractor.net.feature_dim)
    for start in range(0, s.num_samples, s.batch_size):
        images, labels = render_batch(np.arange(start, min(start + s.batch_size, s.num_samples)), split)
        acc.add(*batch_moments(extractor, mesh, pad_rows(images, s.batch_size), pad_rows(labels, s.batch_size),
                               len(labels)))
        bar.update()
    return acc.stats, extractor.net.finish(acc.values())["accuracy"]


def evaluate(s: EvalSettings) -> dict:
    """Runs every configuration for every seed.

    Returns {'results': rows {mode, steps, budget, seed, fid, accuracy, seconds_per_image},
    'reference': {fid_train_vs_test, accuracy_test, num_samples}, 'settings': the settings, device, versions, date}.
    """
    configs = configurations(s.sampling, s.budgets)
    check_batch_size(s.batch_size, jax.device_count())
    models, params = load_pipeline(s.weights, s.dtype, s.attention)
    mesh = make_mesh()
    extractor = on_mesh(classifier_extractor(s.classifier), mesh)
    check_fit(models, extractor.net.cfg)
    plan = Plan(s.num_samples, s.seeds, s.batch_size, extractor.net.cfg.nclass)
    generator = Generator.on(models, params, mesh)
    with tqdm(total=plan.batches * (2 + s.seeds * len(configs)), desc="evaluating", unit="batch") as bar:
        test, accuracy_test = real_statistics("test", s, extractor, mesh, bar)
        train, _ = real_statistics("train", s, extractor, mesh, bar)
        rows, reference = [], Reference(*test.mean_cov())
        for c in configs:
            bar.set_postfix_str(f"{c.mode} N={c.steps} B={c.budget}")
            rows += evaluate_configuration(c, generator, extractor, reference, plan, bar)
    return {
        "results": rows,
        "reference": {"fid_train_vs_test": frechet_distance(*train.mean_cov(), *test.mean_cov()),
                      "accuracy_test": accuracy_test, "num_samples": s.num_samples},
        "settings": {**dataclasses.asdict(s), "sampling": {k: v for k, v in dataclasses.asdict(s.sampling).items()
                                                           if k not in PER_CONFIGURATION},
                     "weights": shown_path(s.weights), "classifier": shown_path(s.classifier),
                     "image_conversion": extractor.net.image_conversion, "labels": "i % nclass",
                     "nclass": plan.nclass, "device": jax.devices()[0].device_kind, "jax_version": jax.__version__,
                     "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
    }


def summary(results: list[dict]) -> list[dict]:
    """Mean and std over seeds per (mode, steps, budget) of every metric the rows hold, in order of first appearance.

    std is the sample standard deviation (ddof=1), 0 for a single seed.
    """
    groups: dict[tuple, list[dict]] = {}
    for row in results:
        groups.setdefault((row["mode"], row["steps"], row["budget"]), []).append(row)
    out = []
    for (mode, steps, budget), rows in groups.items():
        entry = {"mode": mode, "steps": steps, "budget": budget, "seeds": len(rows)}
        for name in (k for k in rows[0] if k not in ROW_KEYS):
            values = np.array([r[name] for r in rows], np.float64)
            entry[f"{name}_mean"] = float(values.mean())
            entry[f"{name}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out.append(entry)
    return out
