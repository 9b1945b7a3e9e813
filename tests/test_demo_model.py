"""The embedded demos. Text-to-image (migm_jax/assets/demo/emoji): `python sample.py` draws the prompted emoji.
MaskGIT on Fashion-MNIST (migm_jax/assets/demo/maskgit): `sample.py --demo-model maskgit` writes its grid into
an empty directory and nothing else, and its vanilla images are of the requested class by the demo's feature
classifier; the shipped weights are trained (ten images of the official test split, tests/data: the VQGAN
reconstructs them, the transformer predicts their masked codes far above chance)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import sample
from migm_jax.apps import maskgit
from migm_jax.assets import DEMO_CLASSIFIER, DEMO_MASKGIT
from migm_jax.models.classifier import FeatureClassifier, load_classifier
from migm_jax.images import clip_uint8, unit_range
from migm_jax.models.maskgit import MaskTransformer, MaskTransformerConfig
from migm_jax.models.vqgan import VQGAN, VQGANConfig
from migm_jax.data.fashion import to_rgb
from migm_jax.weights import as_float32, load_weights


def test_maskgit_demo_is_one_option_away_and_draws_the_requested_classes(tmp_path, monkeypatch, capsys):
    """`sample.py --demo-model maskgit --mode shortcut`: one image per class at the recommended budget (6 of 16
    base-model steps; the two-row grid of both modes is the text-to-image demo's test below; the same code
    draws both families' rows)."""
    drawn = []  # (sampling, labels, images) of every generate() call the CLI makes

    def spy(models, params, sampling, labels, *rest):
        out = real(models, params, sampling, labels, *rest)
        drawn.append((sampling, labels, out[0]))
        return out

    real = maskgit.generate
    monkeypatch.setattr(maskgit, "generate", spy)
    monkeypatch.chdir(tmp_path)
    assert sample.main(["--demo-model", "maskgit", "--mode", "shortcut"]) == 0
    assert "shortcut N=16 B=6 (6 base-model steps): compile" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["samples.png"]
    assert np.asarray(Image.open(tmp_path / "samples.png").convert("RGB")).std() > 10

    [(sampling, labels, images)] = drawn
    assert (sampling.mode, sampling.steps, sampling.budget) == ("shortcut", 16, 6)
    assert list(labels) == list(range(10))  # one image per class
    ccfg, cparams = load_classifier(DEMO_CLASSIFIER)
    logits, _ = FeatureClassifier(ccfg).apply({"params": cparams}, clip_uint8(images))
    hits = int(np.sum(np.argmax(logits, -1) == labels))
    assert hits >= 8, hits  # 10 of 10 measured; README: 0.93 over the harness's 6,000 B = 6 images (chance 0.10)


def test_embedded_weights_are_trained_on_held_out_images():
    _, configs, params = load_weights(DEMO_MASKGIT)
    params = as_float32(params)
    vq = VQGAN(VQGANConfig.from_dict(configs["vqgan"]))
    tcfg = MaskTransformerConfig(**configs["transformer"])
    held_out = np.load(os.path.join(os.path.dirname(__file__), "data", "fashion_test10.npz"))
    images, labels = to_rgb(held_out["image"]), held_out["label"]  # the first test image of each class
    x = unit_range(jnp.asarray(images))

    @jax.jit
    def round_trip(p, x):
        codes = vq.apply({"params": p}, x, method=VQGAN.encode)
        return codes, vq.apply({"params": p}, codes, method=VQGAN.decode_code)

    codes, recon = round_trip(params["vqgan"], x)
    psnr = 10 * np.log10(4.0 / float(jnp.mean((jnp.clip(recon, -1, 1) - x) ** 2)))  # peak-to-peak 2 in [-1, 1]
    assert psnr > 22, psnr  # 24.9 dB measured (README: 24.3 dB on 1,024 test images); a random VQGAN gives < 10

    flat = codes.reshape(codes.shape[0], -1)
    mask = jax.random.uniform(jax.random.PRNGKey(0), flat.shape) < 0.5
    masked = jnp.where(mask, tcfg.mask_id, flat).reshape(codes.shape)
    logits, _ = jax.jit(MaskTransformer(tcfg).apply)({"params": params["transformer"]}, masked, jnp.asarray(labels),
                                                   jnp.zeros(len(labels), bool))
    accuracy = float(jnp.sum((jnp.argmax(logits, -1) == flat) * mask) / jnp.sum(mask))
    assert accuracy > 0.55, accuracy  # 0.66 measured at half masking; chance is 1/512


def test_embedded_weights_fit_the_repository_cap():
    root = os.path.dirname(DEMO_MASKGIT)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(root) for f in files)
    assert total <= 40_000_000, f"{total / 1e6:.1f} MB under {root}"  # README: 33 MB, both demos and classifiers


def test_shortcut_mode_takes_the_weights_budget_and_help_shows_their_settings(capsys):
    from migm_jax.weights import read_config

    args = sample.parse_args(["--demo-model", "maskgit", "--mode", "shortcut"])
    s = maskgit.sampling_from_args(args, "shortcut", read_config(DEMO_MASKGIT)[1])
    assert (s.steps, s.budget, s.cfg_w, s.r_temp) == (16, 6, 4.0, 4.5)  # not "needs --budget"
    with pytest.raises(SystemExit):
        sample.parse_args(["--demo-model", "maskgit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in ["number of steps N (default 16)", "2..N (default 6)", "guidance weight (default 4.0)",
                  "randomisation (default 4.5)"]:
        assert shown in text, shown


def test_emoji_demo_draws_the_prompted_emoji_in_an_empty_directory(tmp_path, monkeypatch, capsys):
    """`python sample.py` (no arguments): the text-to-image demo's ten prompts, a vanilla and a shortcut row
    with the same noise, one labelled grid and nothing else; the demo classifier finds the prompted emoji
    among its 3,504 classes in most images of both rows."""
    from migm_jax.apps import rows
    from migm_jax.assets import DEMO_EMOJI, DEMO_EMOJI_CLASSIFIER
    from migm_jax.models.classifier import class_names
    from migm_jax.weights import read_config

    drawn = []  # (desc, images) of every row the CLI draws

    def spy(fn, params, batch_of, n, batch_size, seed, desc):
        out = real(fn, params, batch_of, n, batch_size, seed, desc)
        drawn.append((desc, out[0]))
        return out

    real = rows.generate
    monkeypatch.setattr(rows, "generate", spy)
    monkeypatch.chdir(tmp_path)
    assert sample.main([]) == 0
    out = capsys.readouterr().out
    assert "vanilla N=16 (16 base-model steps): compile" in out and "shortcut N=16 B=4 (4 base-model steps): compile" in out
    assert [p.name for p in tmp_path.iterdir()] == ["samples.png"]
    assert [d for d, _ in drawn] == ["vanilla N=16", "shortcut N=16 B=4"]
    grid = np.asarray(Image.open(tmp_path / "samples.png").convert("RGB"))
    top = grid.shape[0] - 2 * (14 + 128 + 2) - 2  # the prompts above the columns: 14 px per line of text
    assert grid.shape[1] == 10 * (128 + 2) + 2 and top % 14 == 0 and top >= 14
    for j in range(10):
        x = 2 + j * 130
        assert (grid[:top, x:x + 128] < 128).any()  # the column's prompt
        assert grid[top + 14:top + 14 + 128, x:x + 128].std() > 10  # an image, not a blank tile

    prompts = read_config(DEMO_EMOJI)[1]["sampling"]["prompts"]
    names = class_names(DEMO_EMOJI_CLASSIFIER)
    labels = np.asarray([names.index(p.split(" ", 1)[1]) for p in prompts])  # "<style> <name>"
    ccfg, cparams = load_classifier(DEMO_EMOJI_CLASSIFIER)
    # measured on this seed: 6 of 10 vanilla, 4 of 10 shortcut (chance: 10 / 3,504 = 0.003 images); README: the
    # harness's prompt accuracy over all 6,658 train prompts is ~0.50 (vanilla) and ~0.53-0.56 (shortcut, B = 2-4)
    for (desc, images), least in zip(drawn, (5, 3)):
        assert images.shape == (10, 64, 64, 3) and images.dtype == np.uint8, desc
        logits, _ = FeatureClassifier(ccfg).apply({"params": cparams}, images)
        hits = int(np.sum(np.argmax(logits, -1) == labels))
        assert hits >= least, (desc, hits)
