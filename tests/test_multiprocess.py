"""Several processes, as users launch them on one machine: 2 CPU processes on 127.0.0.1 (gloo collectives).

Training (train.py, configs/smoke.py) gives the 1-process losses within LOSS_TOL, a SIGTERM to one of the
processes stops both at the same step with a checkpoint, and the checkpoints resume in 1 process (within
LOSS_TOL of the 1-process run) and in 2 processes (exactly, as an uninterrupted 2-process run). makedata
writes the same dataset from 2 processes as from 1; the FID moments of a batch are the same over 2
processes as in 1; a process killed with SIGKILL ends the other within a bounded time, with a clear line.

The runs share a persistent compilation cache (the programs of process 0 and of 1-process runs compile once).
"""

import contextlib
import json
import os
import re
import shutil
import signal
import time

import numpy as np
import pytest

from processes import ROOT, Processes, run_together

SMOKE = str(ROOT / "configs" / "smoke.py")
# 1 vs 2 processes: the same samples, RNG keys and data positions; only float32 sums run in another order
# (the gradients are reduced over 2 devices). Measured: at most 6.7e-5 over the 20 steps of configs/smoke.py.
LOSS_TOL = 3e-4


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A compilation cache shared by the runs, and the compiler's cheapest optimization level (the test
    programs compile ~40% faster; every run compared uses the same setting)."""
    return {"JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("jax_cache")),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()}


def train_argv(workdir, *settings: str) -> list[str]:
    sets = [a for s in ("val_every=0", *settings) for a in ("--set", s)]
    return ["train.py", "--config", SMOKE, "--workdir", str(workdir), "--no-progress", *sets]


def metrics(workdir) -> list[dict]:
    """metrics.jsonl without the timing field."""
    with open(workdir / "metrics.jsonl") as f:
        return [{k: v for k, v in json.loads(line).items() if k != "samples_per_s"} for line in f]


def losses(workdir) -> np.ndarray:
    return np.asarray([r["loss"] for r in metrics(workdir)])


def checkpoint_steps(workdir) -> list[int]:
    return sorted(int(d.name) for d in (workdir / "checkpoints").iterdir() if d.name.isdigit())


def copy_run(workdir, dest, last_checkpoint: int):
    """A copy of a run's workdir with its checkpoints after `last_checkpoint` removed."""
    shutil.copytree(workdir, dest)
    for step in checkpoint_steps(dest):
        if step > last_checkpoint:
            shutil.rmtree(dest / "checkpoints" / str(step))
    return dest


ONE_STEPS = 30  # the uninterrupted 1-process run; the 2-process run stops long before


@pytest.fixture(scope="module")
def stopped(tmp_path_factory, env):
    """Side by side: a 2-process run (checkpoints every 2 steps) stopped by a SIGTERM to process 1 once
    process 0 has logged 4 steps, and an uninterrupted 1-process run of ONE_STEPS steps.
    -> {"two": its workdir, "n": the step the 2 processes stopped after, "results": theirs, "one": workdir}."""
    tmp = tmp_path_factory.mktemp("sigterm")
    two, one = tmp / "two", tmp / "one"
    stopping = train_argv(two, "total_steps=500", "ckpt_every=2", "keep_ckpts=500")
    with Processes(train_argv(one, f"total_steps={ONE_STEPS}", "ckpt_every=1000"), 1, tmp / "logs1", env) as single, \
            Processes(stopping, 2, tmp / "logs2", env) as procs:
        log = two / "metrics.jsonl"
        procs.wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= 4, 300, "4 logged steps")
        procs.procs[1].send_signal(signal.SIGTERM)
        results = procs.wait(120)
        assert single.wait(300)[0].code == 0, single.tails()
    found = re.findall(r"stopped by SIGTERM after step (\d+); the same command resumes", results[0].out)
    assert len(found) == 1, [r.out for r in results]
    return {"two": two, "n": int(found[0]), "results": results, "one": one}


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, env, stopped):
    """Side by side, each to 2 steps past the stop: the 2-process run resumed from the checkpoint of the
    SIGTERM in 1 process ("one") and in 2 processes ("two"), and from its periodic checkpoint 2 in 2
    processes ("from2"). -> {name: (workdir, results)}."""
    tmp = tmp_path_factory.mktemp("resumed")
    n = stopped["n"]
    runs = {"one": (1, n), "two": (2, n), "from2": (2, 2)}
    commands = {name: (train_argv(copy_run(stopped["two"], tmp / name, ckpt), f"total_steps={n + 2}"), count)
                for name, (count, ckpt) in runs.items()}
    results = run_together(commands, tmp / "logs", env)
    return {name: (tmp / name, results[name]) for name in runs}


def test_sigterm_to_one_of_two_processes_stops_both_at_the_same_step(stopped):
    work, n, results = stopped["two"], stopped["n"], stopped["results"]
    assert [r.code for r in results] == [143, 143], [r.err[-2000:] for r in results]
    for r in results:  # each process stopped after step n and took part in its checkpoint
        assert f"stopped by SIGTERM after step {n}; the same command resumes" in r.out
        assert "Traceback" not in r.err, r.err[-3000:]
    assert 4 <= n <= ONE_STEPS - 2 and [r["step"] for r in metrics(work)] == list(range(1, n + 1))
    assert checkpoint_steps(work) == sorted({*range(2, n + 1, 2), n})


def test_two_processes_train_as_one_within_the_tolerance(stopped):
    n = stopped["n"]
    two, one = losses(stopped["two"]), losses(stopped["one"])[:n]
    np.testing.assert_allclose(two, one, rtol=0, atol=LOSS_TOL)
    assert not np.array_equal(two, one)  # really two processes: the gradient sums ran in another order


def test_two_process_checkpoint_resumes_in_one_process(stopped, resumed):
    n = stopped["n"]
    work, (result,) = resumed["one"]
    assert f"resumed from step {n} in" in result.out
    assert [r["step"] for r in metrics(work)] == list(range(1, n + 3))
    np.testing.assert_allclose(losses(work), losses(stopped["one"])[:n + 2], rtol=0, atol=LOSS_TOL)


def test_two_process_checkpoints_resume_exactly_in_two_processes(stopped, resumed):
    """From the periodic checkpoint 2, 2 processes repeat the stopped run's steps 3..n exactly and go on
    uninterrupted; from the checkpoint of the SIGTERM they continue exactly as that uninterrupted run."""
    n = stopped["n"]
    (straight, _), (after_stop, results) = resumed["from2"], resumed["two"]
    assert metrics(straight)[:n] == metrics(stopped["two"])
    assert all(f"resumed from step {n} in" in r.out for r in results)
    assert metrics(after_stop) == metrics(straight)


def test_makedata_over_two_processes_writes_the_one_process_dataset(tmp_path, env):
    pytest.importorskip("tensorflow_datasets", reason="needs the [data] extra")
    from migm_jax.training.dataset import TrajectoryReader

    argv = ["-m", "migm_jax.training.makedata", "--config", SMOKE, "--images", "4", "--batch", "2", "--out"]
    results = run_together({n: ([*argv, str(tmp_path / str(n))], n) for n in (1, 2)}, tmp_path / "logs", env)
    records = {}
    for n in (1, 2):
        assert "wrote 8 trajectories (train)" in results[n][0].out
        reader = TrajectoryReader(str(tmp_path / str(n)), "train")
        records[n] = reader.source.__getitems__(list(range(len(reader.source))))
        assert len(records[n]) == 8 * reader.steps
    for one, two in zip(records[1], records[2]):
        assert one.keys() == two.keys()
        for k in one:
            np.testing.assert_array_equal(np.asarray(two[k]), np.asarray(one[k]), err_msg=k)


MOMENTS_SCRIPT = """
import argparse, dataclasses, json
from migm_jax.launch import add_launch_args, initialize, leave
p = argparse.ArgumentParser(); add_launch_args(p); initialize(p.parse_args())
import jax, jax.numpy as jnp, numpy as np
from migm_jax.eval.stats import Accumulator, batch_moments
from migm_jax.eval.features import Extractor
from migm_jax.sharding import batch_sharding, make_mesh

@dataclasses.dataclass(frozen=True)
class Linear:  # a FeatureNet: features = a fixed projection of the pixels, per image = feature 0 + label
    feature_dim: int = 6
    image_conversion: str = "none"
    def to_uint8(self, images): return images
    def prepare(self, images): return images.astype(jnp.float32) / 255
    def apply(self, params, x, labels):
        f = x.reshape(x.shape[0], -1) @ params
        return f, f[:, 0] + labels

rng = np.random.default_rng(0)
images, labels = rng.integers(0, 256, (2, 8, 4, 4, 3), dtype=np.uint8), rng.integers(0, 10, (2, 8))
extractor, mesh = Extractor(Linear(), rng.standard_normal((48, 6)).astype(np.float32)), make_mesh()
acc = Accumulator(6)
acc.add(*batch_moments(extractor, mesh, images[0], labels[0], 8))  # host arrays, the same on every process
n, i = jax.process_count(), jax.process_index()  # a device array over the mesh, each process its rows
mine = jax.make_array_from_process_local_data(batch_sharding(mesh), images[1][i * 8 // n:(i + 1) * 8 // n])
acc.add(*batch_moments(extractor, mesh, mine, labels[1], 5))  # the last 3 rows are padding
mean, cov = acc.stats.mean_cov()
print(json.dumps({"count": acc.stats.count, "mean": mean.tolist(), "cov": cov.tolist(),
                  "per_image": acc.values().tolist()}))
leave(0)
"""


def test_fid_moments_over_two_processes_equal_one_process(tmp_path, env):
    results = run_together({n: (["-c", MOMENTS_SCRIPT], n) for n in (1, 2)}, tmp_path, env)
    (one,), (first, second) = ([json.loads(r.out.splitlines()[-1]) for r in results[n]] for n in (1, 2))
    assert first == second  # every process gets the same statistics
    assert first["count"] == one["count"] == 13 and len(first["per_image"]) == 13
    for k in ("mean", "cov", "per_image"):
        np.testing.assert_allclose(first[k], one[k], rtol=1e-5, atol=1e-6, err_msg=k)  # float32 sums, other order


KILL_SCRIPT = """
import argparse, sys, time
from migm_jax.launch import add_launch_args, error_line, initialize, leave
p = argparse.ArgumentParser(); add_launch_args(p); p.add_argument("--busy", action="store_true"); args = p.parse_args()
initialize(args)
import jax, numpy as np
from jax.experimental import multihost_utils

def main():
    print("ready", flush=True)
    try:
        for step in range(10 ** 6):
            if args.busy:
                time.sleep(600)  # not in a collective: only the heartbeats can tell the other is gone
            multihost_utils.process_allgather(np.int32(step))
            time.sleep(0.01)
    except ValueError as e:  # as the entry points do
        print(f"error: {error_line(e)}", file=sys.stderr)
        return 2
    return 0

leave(main())
"""
HEARTBEAT_S = 3
KILLS = {"in-a-collective": (1, False), "coordinator-in-a-collective": (0, False), "busy-elsewhere": (1, True)}


def test_a_killed_process_ends_the_other_in_bounded_time(tmp_path, env):
    """Three pairs side by side, one process of each killed with SIGKILL. A survivor waiting in a collective
    stops at once with one line, whichever process died (also the coordinator, process 0). A survivor busy
    outside collectives (process 0, which serves the coordinator) is ended by JAX once the dead one has
    missed its heartbeats for MIGM_HEARTBEAT_TIMEOUT, with JAX's message."""
    with contextlib.ExitStack() as stack:
        kill_env = {**env, "MIGM_HEARTBEAT_TIMEOUT": str(HEARTBEAT_S)}
        pairs = {name: stack.enter_context(Processes(["-c", KILL_SCRIPT, *(["--busy"] if busy else [])], 2,
                                                     tmp_path / name, kill_env))
                 for name, (_, busy) in KILLS.items()}
        for procs in pairs.values():
            procs.wait_for(lambda: all("ready" in procs.out(i) for i in (0, 1)), 120, "ready processes")
        time.sleep(0.5)
        start = time.monotonic()
        for name, procs in pairs.items():
            procs.procs[KILLS[name][0]].kill()
        ended = {}
        for name, procs in pairs.items():
            survivor = 1 - KILLS[name][0]
            ended[name] = (procs.wait(HEARTBEAT_S + 30)[survivor], time.monotonic() - start, survivor)
    for name, (result, took, survivor) in ended.items():
        assert result.code != 0, name
        if KILLS[name][1]:
            assert "another task died" in result.err and took < HEARTBEAT_S + 30, (name, took, result.err[-3000:])
        else:
            line = [ln for ln in result.err.splitlines() if ln.startswith("error:")]
            assert len(line) == 1 and f"process {survivor} of 2: another process of this run stopped" in line[0], (
                name, result.err[-3000:])
            assert "Traceback" not in result.err and took < 10, (name, took, result.err[-3000:])


def test_a_process_whose_peers_never_come_stops_in_bounded_time_with_one_line(tmp_path, env):
    """Process 0 alone waits for the others, process 1 alone for the coordinator: both give up after
    MIGM_INIT_TIMEOUT with one line and exit 2 (JAX itself would abort with a stack trace)."""
    argv = train_argv(tmp_path / "w")
    with Processes(argv, 2, tmp_path / "p0", {**env, "MIGM_INIT_TIMEOUT": "2"}, ids=[0]) as alone0, \
            Processes(argv, 2, tmp_path / "p1", {**env, "MIGM_INIT_TIMEOUT": "2"}, ids=[1]) as alone1:
        results = [alone0.wait(60)[0], alone1.wait(60)[0]]
    for i, r in enumerate(results):
        lines = r.err.splitlines()
        assert r.code == 2 and len(lines) == 1, r.err[-3000:]
        assert lines[0].startswith(f"error: process {i} of 2 (coordinator 127.0.0.1:")
        assert "not every process connected within 2 s; start all of them (the same --coordinator" in lines[0]
    assert not (tmp_path / "w").exists()
