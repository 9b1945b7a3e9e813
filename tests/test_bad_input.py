"""Bad input and damaged files: one-line errors naming the problem and the file, reported before any
work starts, with nothing partial left on disk; a damaged newest training checkpoint is skipped."""

import dataclasses
import errno
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import fixture_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(ROOT, "configs", "smoke.py")


@pytest.fixture
def cli(capsys, monkeypatch):
    """run(script, *argv) -> (exit code, stderr, stdout) of a CLI's main() in this process."""
    monkeypatch.syspath_prepend(ROOT)
    import convert_weights
    import sample
    import train

    mains = {"sample.py": sample.main, "train.py": train.main, "convert_weights.py": convert_weights.main}

    def run(script, *argv):
        try:
            code = mains[script](list(argv))
        except SystemExit as e:  # argparse
            code = e.code
        out = capsys.readouterr()
        return code, out.err.strip(), out.out
    return run


def one_line(err: str, *needles: str) -> None:
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def listing(path) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), path) for d, _, files in os.walk(path) for f in files)


def demo_weights(path, drop=(), edit=None) -> str:
    """The demo MaskGIT pipeline saved as a weights dir (without the parts in `drop`; `edit(params)` first)."""
    from migm_jax.apps.maskgit import FAMILY, demo_pipeline
    from migm_jax.weights import save_weights

    models, params = demo_pipeline(0)
    configs = {"transformer": models.transformer.to_dict(), "shortcut": models.shortcut.to_dict(),
               "vqgan": models.vqgan.to_dict()}
    if edit:
        edit(params)
    save_weights(path, FAMILY, {k: v for k, v in configs.items() if k not in drop},
                 {k: v for k, v in params.items() if k not in drop})
    return str(path)


# -- outputs: checked before anything is loaded, written atomically ------------------------------------------------

@pytest.mark.parametrize("out,msg", [
    ("file/x.png", "{d}/file is a file, not a directory"),
    ("sub", "--out {d}/sub is a directory; give a file name ending in .png"),
    ("x.jpg", "--out {d}/x.jpg: the output is a PNG image; give a file name ending in .png"),
    ("locked/new/x.png", "--out {d}/locked/new/x.png: cannot write in {d}/locked"),
])
def test_sample_out_is_checked_before_loading(cli, tmp_path, out, msg):
    (tmp_path / "file").write_text("")
    (tmp_path / "sub").mkdir()
    (tmp_path / "locked").mkdir()
    os.chmod(tmp_path / "locked", 0o555)
    if out.startswith("locked") and os.access(tmp_path / "locked", os.W_OK):
        pytest.skip("permissions are not enforced for this user")
    before = listing(tmp_path)
    # weights that do not exist: any attempt to read them would report that instead
    code, err, _ = cli("sample.py", "--weights", str(tmp_path / "no-weights"), "--out", str(tmp_path / out))
    assert code == 2
    one_line(err, msg.format(d=tmp_path))
    assert listing(tmp_path) == before and not (tmp_path / "locked" / "new").exists()


def test_png_writes_are_atomic(tmp_path, monkeypatch):
    from PIL import Image

    from migm_jax.images import check_finite, save_images

    images = np.zeros((2, 4, 4, 3), np.uint8)
    (tmp_path / "s.png").write_bytes(b"old")
    save = Image.Image.save

    def disk_full(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_images(images, str(tmp_path / "new" / "s.png"), save_each=True)
    with pytest.raises(OSError, match="No space left"):
        save_images(images, str(tmp_path / "s.png"))
    assert listing(tmp_path) == ["s.png"] and (tmp_path / "s.png").read_bytes() == b"old"
    monkeypatch.setattr(Image.Image, "save", save)
    assert save_images(images, str(tmp_path / "s.png"), save_each=True) == [str(tmp_path / f) for f in
                                                                           ("s.png", "s_000.png", "s_001.png")]
    assert listing(tmp_path) == ["s.png", "s_000.png", "s_001.png"]
    with pytest.raises(ValueError, match="sampled images 1 hold NaN"):  # what sample.py checks before writing
        check_finite(np.stack([np.zeros((2, 2, 3)), np.full((2, 2, 3), np.nan)]))


@pytest.mark.parametrize("argv,msg", [
    (["--heads", "0"], "--heads must be a number of attention heads >= 1, got 0"),
    (["--shortcut-heads", "-2"], "--shortcut-heads must be a number of attention heads >= 1, got -2"),
    (["--out", "{d}/file"], "--out {d}/file is a file; give a directory"),
    (["--out", "{d}/file/w"], "--out {d}/file/w: {d}/file is a file, not a directory"),
])
def test_convert_checks_its_arguments_before_reading(cli, tmp_path, argv, msg):
    (tmp_path / "file").write_text("")
    argv = [a.format(d=tmp_path) for a in argv]
    # a checkpoint that does not exist: reading it would report that instead
    code, err, _ = cli("convert_weights.py", "maskgit", "--vit", str(tmp_path / "missing.pth"),
                       "--vqgan-dir", str(tmp_path), "--out", str(tmp_path / "w"), *argv)
    assert code == 2
    one_line(err, msg.format(d=tmp_path))
    assert listing(tmp_path) == ["file"] and not (tmp_path / "w").exists()


def test_weights_dir_write_leaves_nothing_after_an_error(tmp_path, monkeypatch):
    import orbax.checkpoint as ocp

    from migm_jax.weights import save_weights

    def disk_full(self, directory, *args, **kwargs):
        os.makedirs(f"{directory}.orbax-checkpoint-tmp-123")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ocp.StandardCheckpointer, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_weights(tmp_path / "new", "maskgit", {}, {"a": np.ones(2)})
    (tmp_path / "old").mkdir()
    with pytest.raises(OSError, match="No space left"):
        save_weights(tmp_path / "old", "maskgit", {}, {"a": np.ones(2)})
    assert os.listdir(tmp_path) == ["old"] and os.listdir(tmp_path / "old") == []


# -- arguments and settings -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,msg", [
    (["--steps", "1"], "--steps must be >= 2, got 1"),
    (["--seed", "99999999999999999999"], "--seed must be in 0..4294967295 (JAX random keys hold 32 bits)"),
    (["--seed", "-1"], "--seed must be in 0..4294967295"),
    (["--cfg", "nan"], "--cfg must be a finite number, got nan"),
    (["--cfg", "inf"], "--cfg must be a finite number, got inf"),
    (["--tensor", "0"], "--tensor must be a number of devices >= 1, got 0"),
    (["--fsdp", "-1"], "--fsdp must be a number of devices >= 1, got -1"),
])
def test_sample_settings_are_refused_before_loading(cli, argv, msg):
    code, err, _ = cli("sample.py", "--weights", "no/such/dir", *argv)
    assert code == 2
    one_line(err, msg)


def test_fp8_is_refused_where_it_would_be_emulated(cli):
    from migm_jax.models.fp8 import runs_natively

    if runs_natively():
        pytest.skip("this device has FP8 tensor cores")
    code, err, _ = cli("sample.py", "--weights", "no/such/dir", "--matmul", "fp8")
    assert code == 2
    one_line(err, "--matmul fp8 needs FP8 tensor cores (an NVIDIA GPU of compute capability >= 8.9",
             "use --matmul bf16, or add --force-fp8 to run it emulated anyway")
    code, err, _ = cli("sample.py", "--weights", "no/such/dir", "--matmul", "fp8", "--force-fp8")
    assert code == 2 and "FP8" not in err and "no/such/dir" in err  # forced: on to reading the weights


def test_sampler_library_checks():
    from migm_jax.apps.maskgit import demo_pipeline
    from migm_jax.sampling.dimoo import DiMOOSampling
    from migm_jax.sampling.maskgit import MaskGITSampling, build_sampler

    models = dataclasses.replace(demo_pipeline(0)[0], shortcut=None)
    with pytest.raises(ValueError, match="mode shortcut needs a shortcut model"):
        build_sampler(models, MaskGITSampling(steps=4, mode="shortcut", budget=2), decode=False)
    with pytest.raises(ValueError, match="decoding images needs a VQGAN"):
        build_sampler(dataclasses.replace(models, vqgan=None), MaskGITSampling(steps=4))
    with pytest.raises(ValueError, match="300 steps of the arccos schedule cannot fill 16x16 tokens"):
        build_sampler(models, MaskGITSampling(steps=300), decode=False)
    for bad, msg in [(MaskGITSampling(cfg_w=float("nan")), "must be a finite number"),
                     (DiMOOSampling(cfg_scale=float("inf")), "must be a finite number"),
                     (MaskGITSampling(sm_temp=0.0), "sm_temp must be > 0"),
                     (MaskGITSampling(r_temp=-1.0), "cfg_w and r_temp must be >= 0"),
                     (MaskGITSampling(cfg_w=-0.5), "cfg_w and r_temp must be >= 0")]:
        with pytest.raises(ValueError, match=msg):
            bad.validate()
    fn, key = build_sampler(models, MaskGITSampling(steps=4), decode=False), jax.random.PRNGKey(0)
    # checked on the host before anything is traced or compiled (the params are not even looked at)
    for labels, msg in [(jnp.asarray([3, 1000]), r"label 1000 is outside \[0, 1000\)"), (jnp.asarray([-1]), "label -1"),
                        (jnp.asarray([1.5]), "labels must be integer class ids, got dtype float32"),
                        (np.asarray([[1]]), r"labels must be a 1-D array of class ids, got shape \(1, 1\)")]:
        for call in (fn, fn.lower):
            with pytest.raises(ValueError, match=msg):
                call(None, labels, key)
    assert fn._cache_size() == 0


# -- files that are damaged, of the wrong kind, or in the wrong place -------------------------------------------------

def _llada_copy(tmp_path):
    model = tmp_path / "model"
    shutil.copytree(fixture_path("llada"), model)
    return model


def _case_weights_config(tmp_path):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "config.json").write_text('{"family": "maskgit",')
    return ("sample.py", "--weights", str(tmp_path / "w")), f"{tmp_path}/w/config.json is not valid JSON"


def _case_llada_config(tmp_path):
    from migm_jax.convert.dimoo import llada

    model = _llada_copy(tmp_path)
    (model / "config.json").write_text("{'d_model': 64}")
    return (llada, model), f"{model}/config.json is not valid JSON"


def _case_safetensors_index(tmp_path):
    from migm_jax.convert.dimoo import llada

    model = _llada_copy(tmp_path)
    (model / "model.safetensors.index.json").write_bytes(b'{"weight_map": {"a": "model-0\xff"}}')
    return (llada, model), f"{model}/model.safetensors.index.json is not UTF-8 text"


def _case_truncated_shard(tmp_path):
    from migm_jax.convert.dimoo import llada

    model = _llada_copy(tmp_path)
    shard = model / "model-00002-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-1000])  # an interrupted download
    return (llada, model), f"{shard} is a damaged safetensors file"


def _case_prompt_file(tmp_path):
    import argparse

    from migm_jax.apps.dimoo import prompts_from_args

    (tmp_path / "p.txt").write_bytes("a cat\nun caf\xe9\n".encode("latin-1"))
    return ((prompts_from_args, argparse.Namespace(prompt=None, prompt_file=str(tmp_path / "p.txt"))),
            f"--prompt-file {tmp_path}/p.txt is not UTF-8 text (invalid byte on line 2)")


def _case_prompt_dir(tmp_path):
    import argparse

    from migm_jax.apps.dimoo import prompts_from_args

    return ((prompts_from_args, argparse.Namespace(prompt=None, prompt_file=str(tmp_path))),
            f"--prompt-file {tmp_path} is a directory, not a file")


def _case_empty_prompt_file(tmp_path):
    import argparse

    from migm_jax.apps.dimoo import prompts_from_args

    (tmp_path / "p.txt").write_text("\n  \n")
    return ((prompts_from_args, argparse.Namespace(prompt=None, prompt_file=str(tmp_path / "p.txt")), ["a cat"]),
            f"--prompt-file {tmp_path}/p.txt holds no prompt (no line with text)")


def _case_vit_dir(tmp_path):
    return (("convert_weights.py", "maskgit", "--vit", str(tmp_path), "--vqgan-dir", fixture_path("taming_vqgan"),
             "--out", str(tmp_path / "w")), f"{tmp_path} is a directory; give the checkpoint file")


def _case_config_dir(tmp_path):
    return (("train.py", "--config", str(tmp_path), "--workdir", str(tmp_path / "w")),
            f"config file {tmp_path} is a directory")


def _case_config_not_python(tmp_path):
    (tmp_path / "samples.png").write_bytes(b"\x89PNG")
    return (("train.py", "--config", str(tmp_path / "samples.png"), "--workdir", str(tmp_path / "w")),
            f"{tmp_path}/samples.png is not a Python config file (a .py file defining get_config())")


def _case_config_json(tmp_path):
    (tmp_path / "c.json").write_text("{}")
    return (("train.py", "--config", str(tmp_path / "c.json"), "--workdir", str(tmp_path / "w")),
            f"{tmp_path}/c.json is not a Python config file")


def _case_export_folder(tmp_path):
    (tmp_path / "export" / "weights").mkdir(parents=True)
    (tmp_path / "export" / "weights" / "config.json").write_text("{}")
    return (("sample.py", "--weights", str(tmp_path / "export")),
            f"{tmp_path}/export is a train.py export folder; its weights directory is {tmp_path}/export/weights")


def _case_workdir(tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    return (("sample.py", "--weights", str(tmp_path / "run")),
            f"{tmp_path}/run is a training workdir, not a weights directory; export it with train.py --config "
            f"CONFIG --workdir {tmp_path}/run --export, then use {tmp_path}/run/export/weights")


@pytest.mark.parametrize("case", [_case_weights_config, _case_llada_config, _case_safetensors_index,
                                  _case_truncated_shard, _case_prompt_file, _case_prompt_dir,
                                  _case_empty_prompt_file, _case_vit_dir,
                                  _case_config_dir, _case_config_not_python, _case_config_json,
                                  _case_export_folder, _case_workdir])
def test_bad_files_are_named_in_one_line(cli, tmp_path, case):
    call, msg = case(tmp_path)
    if isinstance(call[0], str):
        code, err, _ = cli(*call)
        assert code == 2
    else:
        with pytest.raises((ValueError, OSError)) as e:
            call[0](*call[1:])
        err = str(e.value)
    one_line(err, msg)


def _truncate_data(params_dir):
    for d, _, files in os.walk(params_dir):
        for f in files:
            if os.path.basename(d) == "d":  # the array data files
                with open(os.path.join(d, f), "r+b") as fh:
                    fh.truncate(8)


def _delete_manifests(params_dir):
    for d, _, files in os.walk(params_dir):
        if "manifest.ocdbt" in files:
            os.remove(os.path.join(d, "manifest.ocdbt"))


@pytest.fixture(scope="module")
def saved_demo(tmp_path_factory):
    return demo_weights(tmp_path_factory.mktemp("demo") / "w")


@pytest.mark.parametrize("damage,msg", [
    (_truncate_data, "params is damaged or incomplete"),
    (_delete_manifests, "params is damaged or incomplete"),
    ("nan", "1 param(s) hold NaN or infinite values (vqgan/decoder/conv_in/kernel)"),
])
def test_damaged_weights_dir_is_one_line(cli, tmp_path, saved_demo, damage, msg):
    from migm_jax.weights import DamagedWeightsError, load_weights

    if damage == "nan":
        w = demo_weights(tmp_path / "w", edit=lambda p: p["vqgan"]["decoder"]["conv_in"]["kernel"].__setitem__(0, np.nan))
    else:
        w = str(shutil.copytree(saved_demo, tmp_path / "w"))
        damage(os.path.join(w, "params"))
    with pytest.raises(DamagedWeightsError) as e:
        load_weights(w)
    one_line(str(e.value), w, msg, "re-run convert_weights.py, or train.py --export")
    if damage == "nan":  # sample.py: refused at load, no PNG
        code, err, _ = cli("sample.py", "--weights", w, "--labels", "1", "--out", str(tmp_path / "s.png"))
        assert code == 2 and not (tmp_path / "s.png").exists()
        one_line(err, msg)


def test_nonfinite_checkpoint_tensor_is_named(tmp_path):
    from migm_jax.convert.maskgit import maskgit_shortcut
    from migm_jax.convert.state_dict import CheckpointError
    from migm_jax.convert.torch_file import load_torch_file, save_torch_file

    tensors = load_torch_file(fixture_path("maskgit_shortcut", "shortcut.pth"))
    tensors["last_layer.1.weight"] = np.where(tensors["last_layer.1.weight"] > 0, np.inf, tensors["last_layer.1.weight"])
    save_torch_file(tmp_path / "s.pth", tensors)
    with pytest.raises(CheckpointError) as e:
        maskgit_shortcut(tmp_path / "s.pth", heads=4)
    one_line(str(e.value), f"{tmp_path}/s.pth: 1 tensor(s) hold NaN or infinite values: last_layer.1.weight")


@pytest.mark.parametrize("family", ["maskgit", "dimoo"])
def test_weights_without_an_image_decoder_say_how_to_get_one(cli, tmp_path, family):
    if family == "maskgit":
        w, part, argv = demo_weights(tmp_path / "w", drop=("vqgan",)), "vqgan", []
    else:  # what train.py exports for a random DiMOO teacher: no 'vq' (nor params: they are not reached)
        w, part, argv = str(tmp_path / "w"), "vq", ["--prompt", "a cat"]
        os.makedirs(w)
        with open(os.path.join(w, "config.json"), "w") as f:
            json.dump({"family": "dimoo", "configs": {"llada": {}, "layout": {}, "shortcut": {}}}, f)
    code, err, _ = cli("sample.py", "--weights", w, *argv, "--out", str(tmp_path / "s.png"))
    assert code == 2 and not (tmp_path / "s.png").exists()
    one_line(err, f"{w} holds no image decoder (no '{part}')", "teacher_weights = a convert_weights.py directory")


def test_help_keeps_the_examples_line_breaks(cli):
    for argv, line in [(["sample.py"], "      --budget 14 --mode shortcut --cfg 4 --seed 1 --out bench.png"),
                       (["convert_weights.py"], "      --shortcut maskgit-shortcut.pth --out weights/maskgit"),
                       (["train.py"], "  python train.py --config configs/smoke.py --workdir /tmp/smoke --set total_steps=20")]:
        code, _, out = cli(*argv, "--help")
        assert code == 0 and line in out.splitlines(), out
    assert "random seed, 0..2^32-1 (default 1)" in cli("sample.py", "--help")[2]


# -- training checkpoints -----------------------------------------------------------------------------------------------

def test_damaged_newest_checkpoint_falls_back_and_resumes_exactly(tmp_path, capsys):
    from migm_jax.training import loop
    from migm_jax.training.checkpoint import CheckpointDamagedError
    from migm_jax.training.config import load_config

    def losses():
        with open(tmp_path / "metrics.jsonl") as f:
            return [(r["step"], r["loss"]) for r in map(json.loads, f)]

    cfg = load_config(SMOKE, ["total_steps=6", "ckpt_every=3", "val_every=0"])
    loop.train(cfg, str(tmp_path), progress=False)
    straight = losses()
    ckpt = tmp_path / "checkpoints"
    _truncate_data(ckpt / "6" / "state")  # corrupt data in the newest checkpoint
    capsys.readouterr()
    loop.train(cfg, str(tmp_path), progress=False)
    out = capsys.readouterr()
    one_line(out.err.split("warning: resuming")[0].strip(), f"warning: checkpoint {ckpt}/6 is damaged",
             f"moved it to {ckpt}/6.damaged")
    assert "warning: resuming from checkpoint 3 instead" in out.err and "resumed from step 3" in out.out
    assert losses() == straight and sorted(os.listdir(ckpt)) == ["3", "6", "6.damaged"]
    # a resume whose total_steps the checkpoint has passed says so
    loop.train(load_config(SMOKE, ["total_steps=4", "ckpt_every=3", "val_every=0"]), str(tmp_path), progress=False)
    assert "nothing to train: the checkpoint is at step 6, total_steps is 4" in capsys.readouterr().out
    assert losses() == straight
    # when no checkpoint reads back: one line naming the damaged folders, nothing moved
    for step in ("3", "6"):
        _truncate_data(ckpt / step / "state")
    with pytest.raises(CheckpointDamagedError) as e:
        loop.train(cfg, str(tmp_path), progress=False)
    one_line(str(e.value), f"no checkpoint in {ckpt} reads back: {ckpt}/6 (", f"{ckpt}/3 (",
             "delete the damaged folders to start over")
    assert sorted(os.listdir(ckpt)) == ["3", "6", "6.damaged"] and losses() == straight


def test_gpu_only_attention_is_refused_before_any_work_off_gpu(cli, tmp_path):
    if jax.default_backend() == "gpu":
        pytest.skip("the refusal is for backends without cuDNN")
    tokenizer = os.path.join(ROOT, "migm_jax", "assets", "demo", "maskgit")
    code, err, _ = cli("train.py", "--config", os.path.join(ROOT, "configs", "fashion_transformer.py"),
                       "--workdir", str(tmp_path / "w"), "--set", f"tokenizer={tokenizer}",
                       "--set", f"data_dir={str(tmp_path)!r}")
    assert code == 2 and err.strip() == (
        "error: attention_impl 'cudnn' (cuDNN's fused attention) needs a GPU, this backend is cpu; run on a GPU "
        "or pass --set attention_impl=None (exact attention)")
    assert not (tmp_path / "w").exists()  # refused before the workdir, the images or the tokenizer


@pytest.mark.parametrize("setting,msg", [
    ("teacher.heads=3", "teacher: hidden 32 is not divisible by heads=3"),
    ("shortcut.heads=3", "shortcut width 16 is not divisible by heads=3"),
    ("teacher.vqgan={'embed_dim': 8, 'n_embed': 32, 'z_channels': 16, 'ch': 32, 'ch_mult': (1, 2), "
     "'num_res_blocks': 1, 'attn_resolutions': (), 'resolution': 8}",
     "teacher.vqgan: n_embed 32 != the teacher's codebook_size 16; the decoder needs one embedding per code"),
])
def test_teacher_settings_that_do_not_fit_are_one_line_and_leave_no_folders(cli, tmp_path, monkeypatch, setting, msg):
    from migm_jax.training import maskgit_family

    def built(*args):
        raise AssertionError("the teacher was built before the settings were checked")

    monkeypatch.setattr(maskgit_family, "random_teacher", built)
    code, err, _ = cli("train.py", "--config", SMOKE, "--workdir", str(tmp_path / "w"), "--set", setting)
    assert code == 2
    one_line(err, msg)
    assert not (tmp_path / "w").exists()  # neither the workdir nor an empty checkpoints/ of this failed start
    (tmp_path / "kept").mkdir()  # a workdir the user made stays; only what this start created goes
    assert cli("train.py", "--config", SMOKE, "--workdir", str(tmp_path / "kept"), "--set", setting)[0] == 2
    assert os.listdir(tmp_path / "kept") == []


def test_export_without_a_decoder_names_the_folders(cli, tmp_path):
    """train.py --export of a random teacher without a decoder: sample.py names what is missing, and
    the export folder or the workdir passed as --weights get the folder to use."""
    from migm_jax.training import loop
    from migm_jax.training.config import load_config

    loop.train(load_config(SMOKE, ["total_steps=1", "val_every=0"]), str(tmp_path / "run"), progress=False)
    run = str(tmp_path / "run")
    code, err, _ = cli("train.py", "--config", SMOKE, "--workdir", run, "--set", "total_steps=1", "--set",
                       "val_every=0", "--export")
    assert code == 0, err
    for weights, msg in [(f"{run}/export/weights", f"{run}/export/weights holds no image decoder (no 'vqgan')"),
                         (f"{run}/export", f"{run}/export is a train.py export folder; its weights directory is "
                                           f"{run}/export/weights"),
                         (run, f"{run} is a training workdir")]:
        code, err, _ = cli("sample.py", "--weights", weights, "--labels", "1", "--out", str(tmp_path / "s.png"))
        assert code == 2
        one_line(err, msg)


def test_a_train_step_larger_than_the_device_is_one_line_and_leaves_no_folders(cli, tmp_path, monkeypatch):
    """XLA's memory analysis of the compiled train step against what the device has (here made 0.5 MiB; the
    step of configs/smoke.py needs ~1 MiB), before the first step: one line, and no workdir left."""
    from migm_jax import memory

    monkeypatch.setattr(memory, "device_bytes", lambda device: 2**19)
    code, err, _ = cli("train.py", "--config", SMOKE, "--workdir", str(tmp_path / "w"), "--set", "total_steps=1",
                       "--no-progress")
    assert code == 2
    one_line(err, "error: the train step at batch_size 4 needs ", " MiB of memory per device, the cpu has 0.5 MiB; "
             "lower batch_size (--set batch_size=B; --set accum_steps=K keeps an effective batch of B x K) or shard "
             "the parameters over more devices (--set mesh_fsdp=N)")
    assert not (tmp_path / "w").exists()
