"""Command-line entry points: errors are one line with a non-zero exit code; README's offline tryout commands
(tests/tryout.py: convert -> sample for both families, makedata -> train -> export -> sample) run as written."""

import json
import os
import shlex
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


def test_sample_args_collect_every_prompt_and_pick_attention(monkeypatch):
    monkeypatch.syspath_prepend(ROOT)
    import sample

    args = sample.parse_args(["--weights", "w", "--prompt", "a cat", "--prompt", "a dog", "a cow", "--prompts-file", "p.txt"])
    assert args.prompt == ["a cat", "a dog", "a cow"] and args.prompt_file == "p.txt"
    assert args.attention is None  # auto on CPU: the exact path
    assert sample.parse_args(["--demo-model", "random", "--attention", "xla"]).attention == "xla"


# -- README's offline tryout: its commands, as written, in a folder where the repository's paths resolve -----------

TRYOUT_MASKGIT = """
python tests/tryout.py --out tryout
python convert_weights.py maskgit --vit tryout/maskgit/MaskGIT_small.pth --vqgan-dir tryout/maskgit/VQGAN \\
    --shortcut tryout/maskgit/maskgit-shortcut.pth --heads 4 --shortcut-heads 4 --out tryout/weights/maskgit
python sample.py --weights tryout/weights/maskgit --labels 1 7 282 604 --steps 8 --budget 4 --mode shortcut \\
    --out tryout/maskgit.png --save-each
"""
TRYOUT_DIMOO = """
python convert_weights.py dimoo --model-dir tryout/Lumina-DiMOO --shortcut tryout/dimoo-shortcut.pth \\
    --out tryout/weights/dimoo
python sample.py --weights tryout/weights/dimoo --prompt "a red cube on a blue table" "a photo of a bench" \\
    --height 32 --width 48 --steps 4 --budget 2 --mode shortcut --out tryout/dimoo.png --save-each
"""
TRYOUT_TRAINING = """
python -m migm_jax.training.makedata --config configs/smoke.py --set teacher_weights=tryout/weights/maskgit \\
    --out tryout/data --images 8 --batch 4
python train.py --config configs/smoke.py --workdir tryout/run --set teacher_weights=tryout/weights/maskgit \\
    --set data_dir=tryout/data --set val_every=0
python train.py --config configs/smoke.py --workdir tryout/run --set teacher_weights=tryout/weights/maskgit \\
    --set data_dir=tryout/data --set val_every=0 --export
python sample.py --weights tryout/run/export/weights --labels 1 2 3 --mode shortcut --budget 3 --out tryout/trained.png
"""
TRYOUT_EVAL = """
python -m migm_jax.eval --weights tryout/weights/maskgit --classifier tryout/eval/classifier --data tryout/eval/data \\
    --num-samples 8 --seeds 1 --steps 4 --budgets 2 --out tryout/eval.json --plot tryout/eval.png
"""


def command_lines(text: str) -> list[str]:
    """The command lines of a README block (backslash continuations joined)."""
    return text.replace("\\\n", " ").strip().splitlines()


def run_commands(folder, lines: list[str]) -> list[subprocess.CompletedProcess]:
    """Runs shell command `lines` one after another in `folder` (`python` is this interpreter), each as its own
    process, up to the first that fails."""
    results = []
    for line in lines:
        argv = shlex.split(line)
        results.append(subprocess.run([sys.executable, *argv[1:]], cwd=folder, capture_output=True, text=True,
                                      timeout=600, env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)))
        if results[-1].returncode:
            break
    return results


def succeeded(lines: list[str], results: list[subprocess.CompletedProcess]) -> list[str]:
    """The stdout of each line, once each has exited 0 without a traceback or transformers' PyTorch notice."""
    for line, res in zip(lines, results):
        assert res.returncode == 0, (line, res.stderr[-3000:])
        assert "Traceback" not in res.stderr and "PyTorch was not found" not in res.stderr, (line, res.stderr[-3000:])
    assert len(results) == len(lines)
    return [res.stdout for res in results]


def images(folder, stem: str, n: int) -> list[np.ndarray]:
    """The n images <stem>_000.png ... of a --save-each run."""
    return [np.asarray(Image.open(folder / f"{stem}_{i:03d}.png")) for i in range(n)]


FP8 = ("python sample.py --weights tryout/weights/dimoo --prompt 'a red cube' --height 32 --width 48 --steps 4 "
       "--matmul fp8 --force-fp8 --dtype float32 --out tryout/fp8.png --save-each")


@pytest.fixture(scope="module")
def tryout(tmp_path_factory):
    """A folder holding links to the repository's scripts, tests/ and configs/, where every tryout block ran
    -> (folder, {"maskgit": stdouts of its first two lines}, {chain: lines}, {chain: results}). The stand-ins
    are written and the MaskGIT checkpoints converted first; then three chains run side by side (compiling is
    mostly one core's work): the MaskGIT sample, the DiMOO block (and an FP8 sample from its weights), the
    training block on the converted MaskGIT teacher."""
    pytest.importorskip("transformers", reason="the tryout's DiMOO tokenizer needs the [text] extra")
    pytest.importorskip("tensorflow_datasets", reason="makedata needs the [data] extra")
    from concurrent.futures import ThreadPoolExecutor

    folder = tmp_path_factory.mktemp("readme")
    for name in ("convert_weights.py", "sample.py", "train.py", "tests", "configs"):
        (folder / name).symlink_to(os.path.join(ROOT, name))
    maskgit = command_lines(TRYOUT_MASKGIT)
    chains = {"maskgit": maskgit[2:], "dimoo": command_lines(TRYOUT_DIMOO) + [FP8],
              "training": command_lines(TRYOUT_TRAINING), "eval": command_lines(TRYOUT_EVAL)}
    first = run_commands(folder, maskgit[:2])
    outs = {"maskgit": succeeded(maskgit[:2], first)}
    with ThreadPoolExecutor(len(chains)) as pool:
        results = dict(zip(chains, pool.map(lambda lines: run_commands(folder, lines), chains.values())))
    return folder, outs, chains, results


def test_tryout_maskgit_converts_the_fixtures_and_samples(tryout, capsys, monkeypatch):
    """The fixture transformer cut to the fixture VQGAN's 64 codes converts with it and the fixture shortcut; the
    weights draw 16x16 images (8x8 tokens, f = 2); their one-line errors come before the params are read."""
    folder, outs, chains, results = tryout
    outs = outs["maskgit"] + succeeded(chains["maskgit"], results["maskgit"])
    assert "wrote tryout/weights/maskgit (transformer, vqgan, shortcut)" in outs[1]
    with open(folder / "tryout" / "weights" / "maskgit" / "config.json") as f:
        transformer = json.load(f)["configs"]["transformer"]
    assert (transformer["codebook_size"], transformer["grid"], transformer["nclass"]) == (64, 8, 1000)
    assert "shortcut N=8 B=4 (4 base-model steps): compile" in outs[2] and " s for 4 images (1 batches, " in outs[2]
    assert np.asarray(Image.open(folder / "tryout" / "maskgit.png")).shape == (20, 74, 3)  # one row, 2 px borders
    assert all(im.shape == (16, 16, 3) and im.std() > 0 for im in images(folder / "tryout", "maskgit", 4))
    monkeypatch.syspath_prepend(ROOT)
    import sample

    weights = str(folder / "tryout" / "weights" / "maskgit")
    for argv, msg in [(["--labels", "3", "1000"], "label 1000 is outside [0, 1000)"),
                      (["--prompt", "a cat", "--height", "512"],
                       "--prompt, --height are options of dimoo models, but these weights are maskgit"),
                      (["--mode", "shortcut", "--steps", "6"], "mode shortcut needs --budget B")]:  # none recommended
        assert sample.main(["--weights", weights, *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and len(err.splitlines()) == 1, err


def test_tryout_dimoo_converts_the_fixtures_with_a_tokenizer_and_samples(tryout):
    """The fixture LLaDA, VQ and shortcut with the tryout's tokenizer: the layout is read from the folder, two
    prompts of different lengths draw 32x48 images at a size a CPU holds; the opt-in FP8 projections (emulated
    here) sample from the same weights."""
    folder, _, chains, results = tryout
    outs = succeeded(chains["dimoo"], results["dimoo"])
    assert "wrote tryout/weights/dimoo (shortcut, llada, vq, layout, 2 tokenizer files)" in outs[0]
    with open(folder / "tryout" / "weights" / "dimoo" / "config.json") as f:
        layout = json.load(f)["configs"]["layout"]
    assert {k: layout[k] for k in ("mask", "uncond", "text_vocab_size", "codebook_size")} == \
        {"mask": 492, "uncond": 507, "text_vocab_size": 640, "codebook_size": 128}
    assert "shortcut N=4 B=2 (2 base-model steps)" in outs[1] and ", 32x48" in outs[1]
    assert all(im.shape == (32, 48, 3) and im.std() > 0 for im in images(folder / "tryout", "dimoo", 2))
    [im] = images(folder / "tryout", "fp8", 1)
    assert im.shape == (32, 48, 3) and im.std() > 0


def test_tryout_training_on_the_converted_teacher_exports_weights_that_sample(tryout):
    folder, _, chains, results = tryout
    outs = succeeded(chains["training"], results["training"])
    assert "wrote 16 trajectories (train) to tryout/data" in outs[0]
    with open(folder / "tryout" / "run" / "metrics.jsonl") as f:
        assert [json.loads(line)["step"] for line in f] == list(range(1, 21))
    assert "wrote tryout/run/export/weights and tryout/run/export/shortcut.pth" in outs[2]
    assert "shortcut N=6 B=3 (3 base-model steps)" in outs[3]
    assert np.asarray(Image.open(folder / "tryout" / "trained.png")).std() > 0


def test_tryout_quality_harness_on_the_converted_teacher(tryout):
    """The harness on the MaskGIT stand-in with the tryout's 16x16 class dataset and random classifier: every
    configuration of budget 2 judged against the test images, the train-vs-test floor, the plot."""
    folder, _, chains, results = tryout
    [out] = succeeded(chains["eval"], results["eval"])
    assert "wrote tryout/eval.json" in out and "wrote tryout/eval.png" in out
    with open(folder / "tryout" / "eval.json") as f:
        result = json.load(f)
    modes = {(r["mode"], r["steps"], r["budget"]) for r in result["results"]}
    assert modes == {("vanilla", 4, 4), ("fewer_steps", 2, 2), ("reuse", 4, 2), ("shortcut", 4, 2)}
    assert result["complete"] and result["reference"]["num_samples"] == 8
    assert np.isfinite(result["reference"]["fid_train_vs_test"])
