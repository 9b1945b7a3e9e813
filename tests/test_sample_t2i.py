"""sample.py on text-to-image weights shaped like the embedded demo (a random stand-in, tests/t2i_standin.py):
without prompts or settings it draws the weights' prompts with their recommended settings at their 64x64
size (f=4 VQ), a vanilla and a shortcut row with the same noise, labelled, into an empty directory;
--help shows those settings; unknown words, steps the image cannot take and a bad seed are one-line
errors before the params are read; --list-prompts lists what the weights know; Ctrl-C ends the run at once."""

import os
import shutil
import signal
import threading
import time

import pytest

import sample
from migm_jax.apps import dimoo, maskgit, rows
from migm_jax.weights import PROMPTS_FILE, read_config
from t2i_standin import DEFAULT_PROMPTS, KNOWN, make_standin

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    return make_standin(tmp_path_factory.mktemp("t2i") / "weights")


@pytest.fixture
def no_params(monkeypatch):
    """Reading the params fails: a test passing with it proves its error came first."""
    def refuse(*args, **kwargs):
        raise AssertionError("the params were read")

    monkeypatch.setattr(dimoo, "load_weights", refuse)


def run(capsys, *argv):
    """(exit code, stdout, stderr) of sample.main(argv) in this process."""
    code = sample.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


def test_defaults_come_from_the_weights_and_help_shows_them(standin, capsys):
    _, configs = read_config(standin)
    args = sample.parse_args(["--weights", standin, "--mode", "shortcut"])
    s = dimoo.sampling_from_args(args, "shortcut", configs)
    assert (s.steps, s.budget, s.cfg_scale, s.temperature) == (6, 3, 2.0, 1.0)  # no "needs --budget"
    assert dimoo.prompts_from_args(args, dimoo.defaults(configs)["prompts"]) == DEFAULT_PROMPTS
    with pytest.raises(SystemExit):
        sample.parse_args(["--weights", standin, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in ["number of steps N (default 6)", "2..N (default 3)", "guidance weight (default 2.0)",
                  "downsampling factor (default 64)", "the weights' 3 prompts: " + "; ".join(DEFAULT_PROMPTS),
                  f"Defaults shown: those of {standin} (dimoo)"]:
        assert shown in text, shown


@pytest.mark.parametrize("argv,msg", [
    (["--prompt", "twemoji pizza", "noto sushi roll"],
     "error: prompt 'noto sushi roll': the words 'sushi', 'roll' are not in the model's vocabulary; "
     "`python sample.py --list-prompts --weights {w}` lists the known prompts"),
    (["--steps", "257"], "error: 257 steps for an image of 256 tokens: a step would fix none; use 2..256 steps"),
    (["--height", "66"], "error: image size 66x64 must be positive multiples of 4 (the VQ downsampling)"),
    (["--mode", "shortcut", "--steps", "2"],
     "error: the weights' recommended budget 3 exceeds --steps 2; give --budget B (2..2)"),
])
def test_bad_requests_are_one_line_before_the_params(standin, no_params, tmp_path, capsys, argv, msg):
    code, _, err = run(capsys, "--weights", standin, "--out", str(tmp_path / "s.png"), *argv)
    assert code == 2 and err == msg.format(w=standin)
    assert not (tmp_path / "s.png").exists()


def test_list_prompts_prints_the_known_prompts_else_the_words(standin, no_params, tmp_path, capsys):
    code, out, _ = run(capsys, "--weights", standin, "--list-prompts")
    assert code == 0 and out.splitlines() == KNOWN
    bare = shutil.copytree(standin, tmp_path / "bare")
    os.remove(bare / PROMPTS_FILE)
    code, out, _ = run(capsys, "--weights", str(bare), "--list-prompts")
    words = out.split()
    assert code == 0 and {"twemoji", "noto", "pizza", ":"} <= set(words)
    assert not any(w.startswith("<") for w in words)  # neither the unknown token, the tags nor the layout's tokens


def test_ctrl_c_ends_the_run_at_once_with_one_line_and_no_file(tmp_path, monkeypatch, capsys):
    def blocked(*args):  # a sampling call that would block for a minute
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
        return rows.interruptible(time.sleep, 60)

    monkeypatch.setattr(maskgit, "generate", blocked)
    t0 = time.perf_counter()
    code, _, err = run(capsys, "--demo-model", "random", "--out", str(tmp_path / "s.png"))
    assert code == 130 and err == "interrupted: stopped, nothing written"
    assert time.perf_counter() - t0 < 30 and not (tmp_path / "s.png").exists()


def test_a_program_larger_than_the_device_is_one_line_before_it_runs(standin, tmp_path, monkeypatch, capsys):
    """What XLA's memory analysis of the compiled sampler asks against what the device has, in one line
    (here the device is made to hold 1 MiB), and no image file. (Batch 2: the next test reuses the program.)"""
    from migm_jax import memory

    monkeypatch.setattr(memory, "device_bytes", lambda device: 2**20)
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "--weights", standin, "--mode", "vanilla", "--batch-size", "2")
    [line] = [x for x in err.replace("\r", "\n").splitlines() if "error" in x]
    assert code == 2 and line.startswith("error: sampling vanilla N=6 at batch 2 needs "), err
    assert "MiB of memory per device, the cpu has 1.0 MiB; use a smaller image size or --batch-size" in line, err
    assert list(tmp_path.iterdir()) == []


def test_the_time_per_image_counts_the_images_asked_for(standin, tmp_path, monkeypatch, capsys):
    """3 prompts at batch 2 are 2 batches of 4 rows; the time per image divides by the 3 images (each batch's
    time fixed at 0.3 s here), not by the padded rows."""
    drawn = rows.generate

    def timed(*args):
        images, compile_s, times = drawn(*args)
        assert len(times) == 2
        return images, compile_s, [0.3] * len(times)

    monkeypatch.setattr(rows, "generate", timed)
    code, out, err = run(capsys, "--weights", standin, "--mode", "vanilla", "--batch-size", "2", "--out",
                         str(tmp_path / "s.png"))
    assert code == 0, err
    assert "sampling 0.600 s for 3 images (2 batches, 0.2 s per image), 64x64" in out, out
