"""Base-model training from scratch (VQGAN, MaskGIT transformer, feature classifier) through the demo
configs at tiny sizes: loss decreases, a resumed run repeats the uninterrupted one exactly, exports load,
and the chain VQGAN -> transformer -> shortcut ends in a weights dir that sample.py draws from."""

import json
import os

import numpy as np
import pytest

from migm_jax.training import loop
from migm_jax.training.config import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMON = ["render_images=4", "batch_size=4", "val_batches=1", "ckpt_every=2", "val_every=4", "compute_dtype=float32",
          "warmup_steps=0", "async_ckpt=False", "preview_images=2", "total_steps=4"]
VQGAN = COMMON + ["model.ch=32", "model.z_channels=32", "model.embed_dim=8", "model.n_embed=32", "lr=1e-3",
                  "objective.restart_every=3"]
TRANSFORMER = COMMON + ["model.hidden=32", "model.depth=1", "model.heads=2", "model.mlp_dim=64", "model.codebook_size=32",
                        "sampling.steps=4", "lr=3e-3", "attention_impl=None"]  # the config's cuDNN attention: GPU only
CLASSIFIER = COMMON + ["model.widths=(8, 16)", "model.feature_dim=16", "lr=3e-3"]


def config(name, overrides):
    return load_config(os.path.join(ROOT, "configs", f"demo_{name}.py"), overrides)


def losses(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [(r["step"], r["loss"]) for r in map(json.loads, f)]


def train_resume_export(cfg, tmp):
    """Trains cfg straight and in two parts (2 steps, then resumed to 4); checks the loss falls and the
    two runs agree exactly; returns the export of the straight run."""
    loop.train(cfg, str(tmp / "straight"), progress=False)
    loop.train(load_config_like(cfg, total_steps=2), str(tmp / "parts"), progress=False)
    loop.train(cfg, str(tmp / "parts"), progress=False)
    straight = losses(tmp / "straight")
    assert straight == losses(tmp / "parts")
    assert [s for s, _ in straight] == [1, 2, 3, 4]
    assert min(l for _, l in straight[2:]) < straight[0][1], straight
    return loop.export(cfg, str(tmp / "straight"), str(tmp / "export"))["weights"]


def load_config_like(cfg, **changes):
    import dataclasses

    return dataclasses.replace(cfg, **changes)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vqgan")
    weights = train_resume_export(config("vqgan", VQGAN), tmp)
    with open(tmp / "straight" / "metrics.jsonl") as f:
        last = [json.loads(line) for line in f][-1]
    assert 0 < last["val/usage"] <= 1 and np.isfinite(last["val/psnr"])
    assert os.path.isfile(tmp / "straight" / "samples" / "step_0000004.png")  # originals + reconstructions
    return weights


@pytest.fixture(scope="module")
def teacher(tokenizer, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("transformer")
    weights = train_resume_export(config("transformer", TRANSFORMER + [f"tokenizer={tokenizer!r}"]), tmp)
    assert os.path.isfile(tmp / "straight" / "samples" / "step_0000004.png")
    return weights


def test_vqgan_export_is_a_bfloat16_tokenizer(tokenizer):
    from migm_jax.weights import load_weights

    family, configs, params = load_weights(tokenizer)
    assert family == "maskgit" and set(configs) == {"vqgan"}
    assert params["vqgan"]["quantize"]["embedding"].dtype.name == "bfloat16"  # demo configs export bf16
    for root, _, files in os.walk(tokenizer):  # a weights dir ships: no file names the folder it was saved in
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                assert os.path.dirname(tokenizer).encode() not in f.read(), name


def test_classifier_trains_and_resumes(tmp_path):
    from migm_jax.models.classifier import load_classifier

    ccfg, params = load_classifier(train_resume_export(config("classifier", CLASSIFIER), tmp_path))
    assert ccfg.widths == (8, 16) and params["logits"]["kernel"].shape == (16, 10)


def test_transformer_then_shortcut_export_samples(teacher, tmp_path):
    """The transformer export (transformer + VQGAN + class names) teaches a shortcut whose export
    sample.py draws from with its recommended settings: a labelled grid, a row per mode."""
    from PIL import Image

    import sample

    cfg = config("shortcut", [f"teacher_weights={teacher!r}", "shortcut.heads=2", "sampling.steps=4", "sampling.budget=2",
                              "online_images=2", "online_reuse=2", "val_images=1", "batch_size=4", "total_steps=2",
                              "ckpt_every=2", "val_every=0", "compute_dtype=float32", "teacher_dtype=float32",
                              "async_ckpt=False", "log_kl=False"])
    loop.train(cfg, str(tmp_path / "run"), progress=False)
    weights = loop.export(cfg, str(tmp_path / "run"), str(tmp_path / "export"))["weights"]
    out = tmp_path / "grid.png"
    assert sample.main(["--weights", weights, "--labels", "0", "3", "--dtype", "float32", "--out", str(out)]) == 0
    w, h = Image.open(out).size
    assert w > 2 * 2 * 64 and h > 2 * 2 * 64  # two columns, two rows (vanilla N=4, shortcut B=2) of 2x images
