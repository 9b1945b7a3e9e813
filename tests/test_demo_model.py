"""The embedded demo model (migm_jax/assets/demo): it loads from the package, its samples are
recognised by its own feature classifier well above chance, and the default `sample.py` (no arguments)
writes its labelled grid into an empty directory and nothing else."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from migm_jax.apps.maskgit import load_pipeline
from migm_jax.assets import DEMO_CLASSIFIER, DEMO_MASKGIT
from migm_jax.eval.classifier import FeatureClassifier, load_classifier
from migm_jax.images import clip_uint8
from migm_jax.sampling.maskgit import build_sampler, trajectory_sampling
from migm_jax.sampling.noise import image_keys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_embedded_vanilla_samples_are_recognised_above_chance():
    models, params, configs = load_pipeline(DEMO_MASKGIT)
    assert configs["classes"]["names"][3] == "cross" and models.transformer.nclass == 10
    labels = jnp.asarray(np.arange(20) % 10, jnp.int32)
    images = build_sampler(models, trajectory_sampling(configs["sampling"]))(params, labels, image_keys(jax.random.PRNGKey(7), 0, 20))["images"]
    ccfg, cparams = load_classifier(DEMO_CLASSIFIER)
    logits, _ = FeatureClassifier(ccfg).apply({"params": cparams}, jnp.asarray(clip_uint8(np.asarray(images))))
    accuracy = float(np.mean(np.argmax(np.asarray(logits), -1) == np.asarray(labels)))
    assert accuracy >= 0.2, accuracy  # twice chance (10 classes); the undertrained teacher's measured rate is ~0.25


def test_default_sample_py_in_an_empty_directory(tmp_path):
    res = subprocess.run([sys.executable, os.path.join(ROOT, "sample.py")], cwd=tmp_path, capture_output=True, text=True,
                         timeout=900, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "vanilla N=16 (16 base-model steps): compile" in res.stdout
    assert "shortcut N=16 B=6 (6 base-model steps): compile" in res.stdout
    assert os.listdir(tmp_path) == ["samples.png"]
    grid = np.asarray(Image.open(tmp_path / "samples.png").convert("RGB"))
    # 10 columns and 2 rows of 128 px images (64 px, shown twice enlarged), names above each
    assert grid.shape == (14 + 2 * (14 + 128 + 2) + 2, 10 * (128 + 2) + 2, 3)
    tile = grid[28:28 + 128, 2:2 + 128]
    assert tile.std() > 10  # an image, not a blank tile
