"""Command-line entry points: errors are one line with a non-zero exit code; a saved weights dir samples."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import fixture_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args):
    res = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, JAX_PLATFORMS="cpu"))
    return res.returncode, res.stdout, res.stderr


@pytest.mark.parametrize("args,msg", [
    (["--weights", "no/such/dir", "--mode", "shortcut", "--steps", "8", "--budget", "9"], r"--budget must be in 2..steps (8)"),
    (["--weights", "no/such/dir", "--mode", "vanilla", "--steps", "8", "--budget", "4"], "--budget applies to modes shortcut and reuse, not vanilla"),
    (["--weights", "no/such/dir"], "no converted weights at no/such/dir"),
    (["--weights", "no/such/dir", "--demo-model", "random"], "--demo-model (an embedded model) and --weights exclude each other"),
])
def test_sample_errors_are_one_line(args, msg):
    code, out, err = run_cli("sample.py", *args)
    assert code != 0
    assert msg in err and len(err.strip().splitlines()) == 1, err


def test_convert_reports_parts_that_do_not_fit(tmp_path):
    code, out, err = run_cli("convert_weights.py", "maskgit", "--vit", fixture_path("maskgit_transformer", "MaskGIT_small.pth"),
                             "--vqgan-dir", fixture_path("taming_vqgan"), "--heads", "4", "--out", str(tmp_path / "w"))
    assert code != 0 and "transformer codebook 1024 != VQGAN n_embed 64" in err.strip().splitlines()[-1]
    assert not (tmp_path / "w").exists()


def test_convert_missing_file(tmp_path):
    code, out, err = run_cli("convert_weights.py", "maskgit", "--vit", "missing.pth", "--vqgan-dir", fixture_path("taming_vqgan"),
                             "--out", str(tmp_path / "w"))
    assert code != 0 and "checkpoint not found: missing.pth" in err.strip().splitlines()[-1]


def test_convert_file_of_another_format(tmp_path):
    code, out, err = run_cli("convert_weights.py", "maskgit", "--vit", fixture_path("maskgit_transformer", "config.json"),
                             "--vqgan-dir", fixture_path("taming_vqgan"), "--out", str(tmp_path / "w"))
    assert code != 0 and "config.json is not a PyTorch checkpoint" in err.strip().splitlines()[-1]


def test_saved_weights_sample_and_bad_label(tmp_path):
    from migm_jax.apps.maskgit import FAMILY, demo_pipeline
    from migm_jax.weights import save_weights

    models, params = demo_pipeline(0)
    configs = {"transformer": models.transformer.to_dict(), "shortcut": models.shortcut.to_dict(), "vqgan": models.vqgan.to_dict()}
    save_weights(tmp_path / "w", FAMILY, configs, params)
    code, out, err = run_cli("sample.py", "--weights", str(tmp_path / "w"), "--labels", "3", "1000")
    assert code != 0 and "label 1000 is outside [0, 1000)" in err
    code, out, err = run_cli("sample.py", "--weights", str(tmp_path / "w"), "--prompt", "a cat", "--height", "512")
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert "--prompt, --height are options of dimoo models, but these weights are maskgit" in err
    code, out, err = run_cli("sample.py", "--weights", str(tmp_path / "w"), "--mode", "shortcut", "--steps", "6")
    assert code != 0 and "mode shortcut needs --budget B" in err  # these weights recommend no budget
    png = tmp_path / "s.png"
    code, out, err = run_cli("sample.py", "--weights", str(tmp_path / "w"), "--labels", "3", "9", "--mode", "shortcut",
                             "--steps", "6", "--budget", "3", "--out", str(png), "--save-each", "--dtype", "float32")
    assert code == 0, err
    assert "shortcut N=6 B=3 (3 base-model steps): compile" in out and " s for 2 images" in out
    grid = np.asarray(Image.open(png))
    assert grid.shape == (64 + 4, 2 * 64 + 6, 3) and grid.std() > 0
    assert (tmp_path / "s_000.png").exists() and (tmp_path / "s_001.png").exists()


def test_sample_args_collect_every_prompt_and_pick_attention(monkeypatch):
    monkeypatch.syspath_prepend(ROOT)
    import sample

    args = sample.parse_args(["--weights", "w", "--prompt", "a cat", "--prompt", "a dog", "a cow", "--prompts-file", "p.txt"])
    assert args.prompt == ["a cat", "a dog", "a cow"] and args.prompt_file == "p.txt"
    assert args.attention is None  # auto on CPU: the exact path
    assert sample.parse_args(["--demo-model", "random", "--attention", "xla"]).attention == "xla"
