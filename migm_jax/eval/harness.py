"""Quality and cost of MIGM-Shortcut sampling against cheaper alternatives at the same base-model budget, judged
by a feature classifier, for both model families.

The configurations are `plan`'s (vanilla N; per budget B fewer_steps, reuse, ML-Cache (DiMOO) and shortcut),
the conditions and real images the family's (`families`: MaskGIT classes i % nclass against a class
dataset's test split; DiMOO captions of a dataset split against that split's images of the same captions). Each row has the
FID in the classifier's penultimate feature space against the real images, the accuracy (the fraction of images
whose classifier top-1 is the class, or for DiMOO the label of the prompt's emoji: prompt accuracy), the
fidelity to the vanilla sample of the same seed, condition and noise (fraction of equal tokens, PSNR of the
images) and the seconds per image at the stated batch. Results are written after every (configuration, seed)
and a rerun with the same arguments continues them (`run.FileJournal`).

Generated MaskGIT images go through `migm_jax.images.clip_uint8` ([-1,1] clipped to uint8, the inverse of how
real images enter the models) before the classifier sees them; DiMOO images are the sampler's uint8
(`codes_to_uint8`); real images are the dataset's uint8. (Per-image min-max, what the MaskGIT sampling CLI
saves, would move real images by ~21 levels on average and keep even a perfect generator off the real-data
floor.)
"""

from __future__ import annotations

import dataclasses
import datetime
import json

import jax
from tqdm import tqdm

from migm_jax.eval.families import family_of
from migm_jax.eval.features import classifier_extractor
from migm_jax.eval.plan import PER_CONFIGURATION, Plan, configurations, shown_path
from migm_jax.eval.run import FileJournal, evaluate_configuration, progress_bar
from migm_jax.eval.stats import (Accumulator, Reference, batch_moments, check_batch_size, frechet_distance, on_mesh,
                                 pad_rows)
from migm_jax.models.classifier import classifier_config
from migm_jax.sharding import make_mesh
from migm_jax.weights import read_config


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """weights: a 'maskgit' or 'dimoo' weights dir with a shortcut; classifier: a 'classifier' weights dir;
    sampling: the settings every configuration shares (its steps = N; mode and budget are replaced);
    data / split / prompt_file: the real images (DiMOO: the split whose captions are the prompts)."""

    weights: str
    classifier: str
    family: str
    sampling: object
    budgets: tuple[int, ...]
    num_samples: int = 2000
    seeds: int = 3
    batch_size: int = 16
    dtype: str = "float32"  # compute dtype of the base model and the shortcut
    attention: str | None = None  # their attention_impl: None (exact) | 'cudnn' | 'xla'
    matmul: str | None = None  # DiMOO: None | 'fp8' (LLaDA's block projections)
    data: str | None = None
    split: str | None = None
    prompt_file: str | None = None
    reference_samples: int | None = None  # real images of the FID reference (None: num_samples)


def settings_record(s: EvalSettings, conditions, family) -> dict:
    """The settings as the results store them and a continuation must match (JSON values only)."""
    record = {**dataclasses.asdict(s), "sampling": {k: v for k, v in dataclasses.asdict(s.sampling).items()
                                                   if k not in PER_CONFIGURATION},
              "weights": shown_path(s.weights), "classifier": shown_path(s.classifier),
              "data": shown_path(s.data), "prompt_file": shown_path(s.prompt_file),
              "features": "classifier penultimate layer", "image_conversion": family.image_conversion,
              **conditions.describe(),
              "device": jax.devices()[0].device_kind, "device_count": jax.device_count(), "jax_version": jax.__version__,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    return json.loads(json.dumps(record))


def real_statistics(real, plan: Plan, extractor, mesh, bar: tqdm):
    """(feature statistics, classifier accuracy) of real images 0..num_samples-1 (`real(start, size)` ->
    (uint8 images, labels)), in the plan's batches."""
    acc, bs = Accumulator(extractor.net.feature_dim), plan.batch_size
    for j in range(plan.batches):
        images, labels = real(j * bs, plan.count(j))
        acc.add(*batch_moments(extractor, mesh, pad_rows(images, bs), pad_rows(labels, bs), len(labels)))
        bar.update(len(labels))
    return acc.stats, extractor.net.finish(acc.values())["accuracy"]


def reference_statistics(conditions, plan: Plan, extractor, mesh, reference_samples: int | None = None
                         ) -> tuple[Reference, dict]:
    """The reference (the statistics of the first real set's first `reference_samples` images, default the plan's
    num_samples) and what the results record of the real images: the classifier's accuracy on them and, when the
    family has a second real set, the FID of its first num_samples images (a generated point's sample size)
    against the reference: the real-data floor."""
    sets = conditions.real_sets()
    plans = [Plan(reference_samples or plan.num_samples, 1, plan.batch_size)] + [plan] * (len(sets) - 1)
    with tqdm(total=sum(p.num_samples for p in plans), desc="real images", unit="image") as bar:
        stats = [real_statistics(real, p, extractor, mesh, bar) for (_, real), p in zip(sets, plans)]
    record = {"accuracy_real": stats[0][1], "num_samples": plans[0].num_samples}
    for (name, _), (other, _) in zip(sets[1:], stats[1:]):
        record[f"fid_{name}_vs_{sets[0][0]}"] = frechet_distance(*other.mean_cov(), *stats[0][0].mean_cov())
    return Reference(*stats[0][0].mean_cov()), record


def evaluate(s: EvalSettings, out: str) -> dict:
    """Runs (or continues, from `out`) every configuration for every seed; returns the complete results
    {'results': rows {mode, steps, budget, seed, fid, accuracy, equal_tokens, psnr, seconds_per_image},
    'settings', 'reference': {accuracy_real, num_samples[, fid_train_vs_test]}, 'complete'}.

    Every check (schedule, budgets, weights' parts, classifier, dataset, prompts) comes before any params
    are read or real image is judged."""
    family_name, configs = read_config(s.weights)
    family = family_of(family_name, s.weights)
    runs = configurations(s.sampling, s.budgets, family.modes)
    check_batch_size(s.batch_size, jax.device_count())
    clf = classifier_config(s.classifier)
    models, conditions = family.setup(s, configs, runs, clf)
    plan = Plan(s.num_samples, s.seeds, s.batch_size)
    mesh = make_mesh()
    extractor = on_mesh(classifier_extractor(s.classifier), mesh)
    journal = FileJournal(out, settings_record(s, conditions, family))  # refuses another run's results
    pipeline = family.load(s, models, conditions, mesh)
    reference, journal.extra["reference"] = reference_statistics(conditions, plan, extractor, mesh, s.reference_samples)
    with progress_bar(runs, plan, journal, "sampling (batches x full steps)") as bar:
        for c in runs:
            evaluate_configuration(c, pipeline, extractor, reference, plan, bar, journal, fidelity=True)
    return journal.finish()
