"""FID and Inception Score of MaskGIT-Shortcut samples with the FID Inception-v3, against reference statistics.

The configurations are the harness's (vanilla N once; fewer_steps / reuse / shortcut per budget), restricted
to the requested modes, and each runs through the same loop (`run.evaluate_configuration`). Decoded
images become uint8 by per-image min-max (`migm_jax.images.minmax_uint8`), as the original MaskGIT code
saves its samples before torch-fidelity reads them. Results are written after every (configuration, seed)
and a rerun continues them (`run.FileJournal`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json

import jax

from migm_jax.apps import maskgit as maskgit_app
from migm_jax.apps.maskgit import FAMILY
from migm_jax.eval.families import Classes, MaskGITPipeline
from migm_jax.eval.features import IS_SPLITS, InceptionNet, inception_extractor
from migm_jax.eval.plan import PER_CONFIGURATION, Plan, configurations, shown_path
from migm_jax.eval.refstats import read_ref_stats
from migm_jax.eval.run import FileJournal, evaluate_configuration, progress_bar
from migm_jax.eval.stats import Reference, on_mesh
from migm_jax.models.maskgit import MaskTransformerConfig
from migm_jax.sampling.maskgit import MaskGITSampling
from migm_jax.sharding import make_mesh, replicated
from migm_jax.weights import read_config

MODES = ("vanilla", "fewer_steps", "reuse", "shortcut")


@dataclasses.dataclass(frozen=True)
class FIDSettings:
    """weights: a 'maskgit' weights dir; inception: the FID Inception .pth of `flavor`'s package; ref_stats: the
    reference statistics; sampling: what every configuration shares (steps = N)."""

    weights: str
    inception: str
    ref_stats: str
    sampling: MaskGITSampling
    budgets: tuple[int, ...]
    modes: tuple[str, ...] = MODES
    flavor: str = "torch-fidelity"
    num_samples: int = 50000
    seeds: int = 1
    batch_size: int = 64
    dtype: str = "float32"  # compute dtype of transformer and shortcut
    attention: str | None = None  # their attention_impl: None (exact) | 'cudnn' | 'xla'


def selected_configurations(s: FIDSettings):
    return configurations(s.sampling, s.budgets, s.modes)


def check_weights(s: FIDSettings) -> int:
    """The generator's number of classes; ValueError when the weights cannot run the selected modes."""
    family, configs = read_config(s.weights)
    if family != FAMILY or "transformer" not in configs or "vqgan" not in configs:
        raise ValueError(f"{s.weights} holds {family} weights ({', '.join(configs)}); the FID needs {FAMILY} weights "
                         "with a transformer and a VQGAN")
    if "shortcut" in s.modes and "shortcut" not in configs:
        raise ValueError(f"{s.weights} holds no shortcut; leave shortcut out of --mode or convert with --shortcut")
    return MaskTransformerConfig.from_dict(configs["transformer"]).nclass


def settings_record(s: FIDSettings, nclass: int) -> dict:
    """The settings as the results store them and a continuation must match (JSON values only)."""
    net = InceptionNet(s.flavor)
    record = {**dataclasses.asdict(s), "sampling": {k: v for k, v in dataclasses.asdict(s.sampling).items()
                                                   if k not in PER_CONFIGURATION},
              "weights": shown_path(s.weights), "inception": shown_path(s.inception),
              "ref_stats": shown_path(s.ref_stats), "features": f"Inception-v3 pool, {s.flavor} preprocessing",
              "image_conversion": f"{net.image_conversion} (per-image min-max to 0..255, truncated)",
              "inception_score": f"torch-fidelity isc: logits without the fc bias, "
                                 f"{min(IS_SPLITS, s.num_samples)} shuffled splits",
              "labels": "i % nclass", "nclass": nclass, "device": jax.devices()[0].device_kind,
              "device_count": jax.device_count(), "jax_version": jax.__version__,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    return json.loads(json.dumps(record))


def evaluate_fid(s: FIDSettings, out: str) -> dict:
    """Runs (or continues, from `out`) every selected configuration for every seed; returns the complete results
    {'results': rows {mode, steps, budget, seed, fid, is, is_std, seconds_per_image}, 'settings', 'complete'}."""
    configs = selected_configurations(s)
    if not configs:
        raise ValueError(f"--mode {' '.join(s.modes)} selects no configuration")
    nclass = check_weights(s)
    mu, sigma = read_ref_stats(s.ref_stats, InceptionNet(s.flavor).feature_dim)
    journal = FileJournal(out, settings_record(s, nclass))  # refuses another run's results before any work
    reference = Reference(mu, sigma)
    mesh = make_mesh()
    models, params, _ = maskgit_app.load_pipeline(s.weights)
    pipeline = MaskGITPipeline(dataclasses.replace(models, dtype=s.dtype, attention_impl=s.attention),
                               jax.device_put(params, replicated(mesh)), mesh, Classes(nclass))
    extractor = on_mesh(inception_extractor(s.inception, s.flavor), mesh)
    plan = Plan(s.num_samples, s.seeds, s.batch_size)
    with progress_bar(configs, plan, journal, "FID (batches x full steps)") as bar:
        for c in configs:
            evaluate_configuration(c, pipeline, extractor, reference, plan, bar, journal)
    return journal.finish()
