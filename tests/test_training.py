"""Training: overfitting lowers the loss, exact resume (after a crash and after SIGTERM), export round
trip, resume refusing a changed config, one-line CLI errors."""

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from migm_jax.training import loop
from migm_jax.training.config import load_config
from migm_jax.training.metrics import MetricsLog

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(ROOT, "configs", "smoke.py")


def losses(workdir) -> list[tuple[int, float]]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [(r["step"], r["loss"]) for r in map(json.loads, f)]


def test_overfitting_a_few_trajectories_lowers_the_loss(tmp_path):
    pytest.importorskip("tensorflow_datasets", reason="needs the [data] extra")
    from migm_jax.training.makedata import capture_to_disk

    cfg = load_config(SMOKE, ["total_steps=40", "val_every=0", "ckpt_every=40"])
    family, teacher, _, configs, _ = loop.build_family(cfg)
    capture_to_disk(family, teacher, configs, str(tmp_path / "data"), "train", images=2, seed=1, batch=2, progress=False)
    loop.train(dataclasses.replace(cfg, data_dir=str(tmp_path / "data")), str(tmp_path / "run"), progress=False)
    seq = [loss for _, loss in losses(tmp_path / "run")]  # 20 samples, 8 epochs
    assert len(seq) == 40
    assert np.mean(seq[-5:]) < 0.3 * np.mean(seq[:5]), seq


class Crash(Exception):
    pass


def test_resume_after_a_crash_repeats_the_uninterrupted_run(tmp_path, monkeypatch, capsys):
    cfg = load_config(SMOKE, ["total_steps=8", "ckpt_every=3", "val_every=4"])
    loop.train(cfg, str(tmp_path / "straight"), progress=False)
    write = MetricsLog.write

    def crash_at_6(self, record):
        if record["step"] == 6:
            raise Crash()
        write(self, record)

    monkeypatch.setattr(MetricsLog, "write", crash_at_6)
    with pytest.raises(Crash):
        loop.train(cfg, str(tmp_path / "crashed"), progress=False)
    assert [s for s, _ in losses(tmp_path / "crashed")] == [1, 2, 3, 4, 5]
    monkeypatch.setattr(MetricsLog, "write", write)
    loop.train(cfg, str(tmp_path / "crashed"), progress=False)
    assert "resumed from step 3" in capsys.readouterr().out
    assert losses(tmp_path / "crashed") == losses(tmp_path / "straight")
    # a later run with a higher total_steps continues the same run
    loop.train(dataclasses.replace(cfg, total_steps=9), str(tmp_path / "crashed"), progress=False)
    assert [s for s, _ in losses(tmp_path / "crashed")] == list(range(1, 10))

    # export: the EMA shortcut as a weights dir and as the original's .pth, which converts back exactly
    from migm_jax.convert.maskgit import maskgit_shortcut
    from migm_jax.weights import load_weights

    paths = loop.export(cfg, str(tmp_path / "crashed"), str(tmp_path / "export"))
    run = loop.setup(cfg, str(tmp_path / "crashed"))
    ema = jax.device_get(run.state.ema)
    run.checkpoints.close()
    family, configs, params = load_weights(paths["weights"])
    assert family == "maskgit" and set(configs) == {"transformer", "shortcut", "sampling"}
    assert configs["sampling"] == cfg.sampling  # the settings it was trained for: sample.py's defaults
    jax.tree.map(np.testing.assert_array_equal, params["shortcut"], ema)
    scfg, back = maskgit_shortcut(paths["pth"], heads=cfg.shortcut["heads"])
    assert scfg.to_dict() == configs["shortcut"]
    jax.tree.map(np.testing.assert_array_equal, back, ema)


def test_sigterm_stops_after_the_step_in_progress_and_resumes_exactly(tmp_path, capsys):
    work = tmp_path / "w"
    metrics = work / "metrics.jsonl"
    # total_steps: far more than run before the signal (steps take ~10 ms on CPU), so it lands mid-run
    argv = [sys.executable, os.path.join(ROOT, "train.py"), "--config", SMOKE, "--workdir", str(work),
            "--set", "total_steps=2000", "--set", "ckpt_every=1000", "--no-progress"]
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        proc = subprocess.Popen(argv, env=dict(os.environ, JAX_PLATFORMS="cpu"), stdout=out, stderr=err, cwd=ROOT)
        try:
            deadline = time.monotonic() + 120
            while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "err").read_text()[-3000:]
                time.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
        finally:
            proc.kill()
    stdout, stderr = (tmp_path / "out").read_text(), (tmp_path / "err").read_text()
    assert code == 128 + signal.SIGTERM and "Traceback" not in stderr, stderr[-3000:]
    found = re.findall(r"stopped by SIGTERM after step (\d+); the same command resumes", stdout)
    assert len(found) == 1, stdout
    n = int(found[0])
    assert 3 <= n < 2000 and [s for s, _ in losses(work)] == list(range(1, n + 1))
    assert max(int(d) for d in os.listdir(work / "checkpoints") if d.isdigit()) == n

    cfg = load_config(SMOKE, [f"total_steps={n + 2}", "ckpt_every=1000"])
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    assert loop.train(cfg, str(work), progress=False) is None
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers  # restored
    assert f"resumed from step {n} in" in capsys.readouterr().out
    loop.train(cfg, str(tmp_path / "straight"), progress=False)
    assert losses(work) == losses(tmp_path / "straight")


@pytest.fixture
def cli(capsys):
    sys.path.insert(0, ROOT)
    import train

    def run(*argv):
        code = train.main(list(argv))
        return code, capsys.readouterr().err.strip()
    yield run
    sys.path.remove(ROOT)


@pytest.mark.parametrize("argv,msg", [
    (["--config", "configs/nope.py"], "config file not found: configs/nope.py"),
    (["--config", SMOKE, "--set", "learning_rate=1"], "unknown config key 'learning_rate'"),
    (["--config", SMOKE, "--set", "lr=fast"], "lr must be a number"),
    (["--config", SMOKE, "--set", "total_steps=2.5"], "total_steps must be an integer"),
    (["--config", SMOKE, "--set", "batch_size=0"], "batch_size must be >= 1"),
    (["--config", SMOKE, "--set", "lr"], "--set expects key=value"),
    (["--config", SMOKE, "--set", "data_dir=/no/such/dir"], "data_dir: no such directory: /no/such/dir"),
    (["--config", SMOKE, "--set", "teacher.depthh=2"], "teacher: "),
    (["--config", SMOKE, "--set", "teacher.hidden=abc"], "teacher.hidden must be a number"),
    (["--config", SMOKE, "--set", "teacher=5"], "--set teacher=5: teacher must be a dict, e.g. {'hidden': 64}, got 5"),
    (["--config", SMOKE, "--set", "preview_budgets=3"], "preview_budgets must be a tuple, e.g. (4, 8), got 3"),
    (["--config", SMOKE, "--set", "lr=-1e-4"], "lr must be a finite number >= 0, got -0.0001"),
    (["--config", SMOKE, "--set", "weight_decay=1e999"], "weight_decay must be a finite number >= 0, got inf"),
    (["--config", ROOT], f"config file {ROOT} is a directory"),
    (["--config", SMOKE, "--set", "attention_impl=cudnn"], "attention_impl 'cudnn' cannot train the MaskGIT shortcut"),
])
def test_bad_config_is_one_line(cli, tmp_path, argv, msg):
    code, err = cli(*argv, "--workdir", str(tmp_path / "w"))
    assert code == 2 and msg in err and len(err.splitlines()) == 1, err


def test_bad_workdir_is_one_line(cli, tmp_path):
    (tmp_path / "file").write_text("")
    code, err = cli("--config", SMOKE, "--workdir", str(tmp_path / "file" / "w"))
    assert code == 2 and f"workdir {tmp_path / 'file' / 'w'} is not writable" in err and len(err.splitlines()) == 1, err
    code, err = cli("--config", SMOKE, "--workdir", str(tmp_path / "w"), "--export")
    assert code == 2 and "no checkpoint in" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "w").exists()  # refused before anything was built or created


def test_resume_refuses_a_changed_config_in_one_line(cli, tmp_path):
    work = str(tmp_path / "w")
    loop.train(load_config(SMOKE, ["total_steps=1"]), work, progress=False)
    fix = "use a new --workdir or the saved settings"
    for change, diff in [("shortcut.bottleneck_ratio=4", "shortcut.bottleneck_ratio: saved 2, now 4"),
                         ("batch_size=8", "batch_size: saved 4, now 8")]:
        code, err = cli("--config", SMOKE, "--workdir", work, "--set", "total_steps=3", "--set", change)
        assert code == 2 and f"checkpoint (step 1) was trained with a different config: {diff}; {fix}" in err, err
        assert len(err.splitlines()) == 1, err
    # several fields: each named once, in one line; total_steps (allowed to change) is not among them
    code, err = cli("--config", SMOKE, "--workdir", work, "--set", "seed=1", "--set", "lr=0.5", "--set", "total_steps=9")
    assert code == 2 and "lr: saved 0.001, now 0.5; seed: saved 42, now 1; use" in err and "total_steps" not in err, err


def test_accumulation_ema_and_step_decay():
    import jax.numpy as jnp
    import optax

    from migm_jax.training.config import TrainConfig
    from migm_jax.training.state import apply_gradients, init_state, learning_rate, make_optimizer

    cfg = TrainConfig(teacher={"hidden": 8}, accum_steps=2, lr=0.1, ema_decay=0.5)
    lr = learning_rate(cfg)
    assert float(lr(999)) == np.float32(0.1) and float(lr(1000)) == np.float32(0.1 * 0.1)
    tx = make_optimizer(cfg)
    params = {"w": jnp.array([1.0, -2.0])}
    state = init_state(params, tx, jax.random.PRNGKey(0))
    g1, g2 = {"w": jnp.array([0.2, 0.4])}, {"w": jnp.array([0.6, -0.4])}
    state = apply_gradients(state, g1, tx, cfg.ema_decay)
    assert int(state.step) == 0 and np.array_equal(state.params["w"], params["w"])
    state = apply_gradients(state, g2, tx, cfg.ema_decay)
    ref = optax.adamw(0.1, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-2)
    upd, _ = ref.update({"w": (g1["w"] + g2["w"]) / 2}, ref.init(params), params)
    want = optax.apply_updates(params, upd)["w"]
    assert int(state.step) == 1
    np.testing.assert_allclose(state.params["w"], want, rtol=1e-6)
    np.testing.assert_allclose(state.ema["w"], want, rtol=1e-6)  # the first update copies (AveragedModel)
    for g in (g1, g2):
        prev_ema, state = state.ema["w"], apply_gradients(state, g, tx, cfg.ema_decay)
    np.testing.assert_allclose(state.ema["w"], 0.5 * prev_ema + 0.5 * state.params["w"], rtol=1e-6)


# README's example of a random teacher's decoder: configs/smoke.py's 16 codes of 4x4 tokens -> 8x8 images
TEACHER_VQGAN = ("teacher.vqgan={'embed_dim': 8, 'n_embed': 16, 'z_channels': 16, 'ch': 32, 'ch_mult': (1, 2), "
                 "'num_res_blocks': 1, 'attn_resolutions': (), 'resolution': 8}")


def test_validation_writes_a_sample_grid(tmp_path):
    from PIL import Image

    cfg = load_config(SMOKE, ["total_steps=2", "val_every=2", "ckpt_every=2", "preview_budgets=(3,)",
                              "preview_images=3", TEACHER_VQGAN])
    loop.train(cfg, str(tmp_path), progress=False)
    grid = np.asarray(Image.open(tmp_path / "samples" / "step_0000002.png"))
    assert grid.shape == (2 * 10 + 2, 3 * 10 + 2, 3)  # rows vanilla, B=3; 3 images of 8x8, 2 px padding
    tiles = [grid[2 + 10 * r:10 + 10 * r, 2 + 10 * c:10 + 10 * c] for r in range(2) for c in range(3)]
    assert all(t.std() > 0 for t in tiles)
    assert not np.array_equal(tiles[0], tiles[3])  # the shortcut rows are not copies of the teacher's
