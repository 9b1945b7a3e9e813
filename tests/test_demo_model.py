"""The embedded demo model (migm_jax/assets/demo): the default `sample.py` (no arguments) writes its
labelled grid into an empty directory and nothing else, and the vanilla images it draws are recognised
by the model's own feature classifier well above chance."""

import jax.numpy as jnp
import numpy as np
from PIL import Image

import sample
from migm_jax.apps import maskgit
from migm_jax.assets import DEMO_CLASSIFIER
from migm_jax.eval.classifier import FeatureClassifier, load_classifier
from migm_jax.images import clip_uint8


def test_default_sample_py_draws_recognisable_classes(tmp_path, monkeypatch, capsys):
    drawn = []  # (sampling, labels, images) of every generate() call the CLI makes

    def spy(models, params, sampling, labels, *rest):
        out = real(models, params, sampling, labels, *rest)
        drawn.append((sampling, labels, out[0]))
        return out

    real = maskgit.generate
    monkeypatch.setattr(maskgit, "generate", spy)
    monkeypatch.chdir(tmp_path)
    assert sample.main([]) == 0
    out = capsys.readouterr().out
    assert "vanilla N=16 (16 base-model steps): compile" in out and "shortcut N=16 B=6 (6 base-model steps): compile" in out
    assert [p.name for p in tmp_path.iterdir()] == ["samples.png"]
    grid = np.asarray(Image.open(tmp_path / "samples.png").convert("RGB"))
    # 10 columns and 2 rows of 128 px images (64 px shown twice enlarged), names above each
    assert grid.shape == (14 + 2 * (14 + 128 + 2) + 2, 10 * (128 + 2) + 2, 3)
    assert grid[28:28 + 128, 2:2 + 128].std() > 10  # an image, not a blank tile

    (vanilla, labels, images), (shortcut, _, _) = drawn
    assert (vanilla.mode, vanilla.steps, shortcut.mode, shortcut.budget) == ("vanilla", 16, "shortcut", 6)
    assert list(labels) == list(range(10))  # one image per class
    ccfg, cparams = load_classifier(DEMO_CLASSIFIER)
    logits, _ = FeatureClassifier(ccfg).apply({"params": cparams}, jnp.asarray(clip_uint8(images)))
    accuracy = float(np.mean(np.argmax(np.asarray(logits), -1) == labels))
    assert accuracy >= 0.2, accuracy  # twice chance (10 classes); the undertrained teacher measures ~0.2-0.25
