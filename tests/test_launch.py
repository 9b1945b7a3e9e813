"""Launch settings of the several-process entry points (migm_jax/launch.py): which settings start what,
and one line for settings that cannot work, before anything is started."""

import argparse
import os
from pathlib import Path

import pytest

from migm_jax.launch import LaunchError, add_launch_args, launch_settings

ROOT = Path(__file__).resolve().parents[1]


def settings(argv=(), **env):
    p = argparse.ArgumentParser()
    add_launch_args(p)
    return launch_settings(p.parse_args(list(argv)), env)


EXPLICIT = {"coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}


def test_where_the_processes_come_from():
    assert settings() is None  # a single process: nothing to initialize
    flags = ["--coordinator", "10.0.0.1:1234", "--num-processes", "4", "--process-id", "3"]
    assert settings(flags) == EXPLICIT
    variables = {"MIGM_COORDINATOR": "10.0.0.1:1234", "MIGM_NUM_PROCESSES": "4", "MIGM_PROCESS_ID": "3"}
    assert settings(**variables) == EXPLICIT
    assert settings(["--process-id", "3"], **{**variables, "MIGM_PROCESS_ID": "0"}) == EXPLICIT  # a flag wins
    ipv6 = settings(["--coordinator", "[::1]:80", "--num-processes", "2", "--process-id", "0"])
    assert ipv6["coordinator_address"] == "[::1]:80"
    assert settings(["--coordinator", "h:1", "--num-processes", "1", "--process-id", "0"]) is None
    # a cluster launcher (jax.distributed finds the settings): several SLURM / Open MPI tasks, or --multihost
    assert settings(SLURM_NTASKS="4") == {} and settings(OMPI_COMM_WORLD_SIZE="2") == {}
    assert settings(SLURM_NTASKS="1") is None
    assert settings(["--multihost"]) == {} and settings(MIGM_MULTIHOST="1") == {}
    assert settings(flags, SLURM_NTASKS="8") == EXPLICIT  # explicit settings win over the launcher's


@pytest.mark.parametrize("argv,env,msg", [
    (["--coordinator", "h:1"], {}, "--coordinator given without --num-processes (or MIGM_NUM_PROCESSES) and "
                                   "--process-id (or MIGM_PROCESS_ID): give all three launch settings or none"),
    ([], {"MIGM_PROCESS_ID": "1"}, "MIGM_PROCESS_ID given without --coordinator (or MIGM_COORDINATOR) and"),
    (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"], {},
     "--process-id 2 is out of range for 2 processes: use 0 .. 1"),
    (["--coordinator", "h:1", "--num-processes", "0", "--process-id", "0"], {}, "--num-processes must be >= 1, got 0"),
    (["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"], {},
     "--coordinator must be HOST:PORT (e.g. 127.0.0.1:12355), got 'localhost'"),
    (["--coordinator", "h:99999", "--num-processes", "2", "--process-id", "0"], {}, "--coordinator must be HOST:PORT"),
    ([], {"MIGM_COORDINATOR": "h:1", "MIGM_NUM_PROCESSES": "two", "MIGM_PROCESS_ID": "0"},
     "MIGM_NUM_PROCESSES must be an integer, got 'two'"),
    ([], {"JAX_COORDINATOR_ADDRESS": "h:1"}, "JAX_COORDINATOR_ADDRESS is set but no launcher gives the process count "
                                              "and id: pass --num-processes and --process-id"),
])
def test_settings_that_cannot_work_are_one_line(argv, env, msg):
    with pytest.raises(LaunchError) as e:
        settings(argv, **env)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_entry_points_refuse_them_in_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.syspath_prepend(str(ROOT))
    import sample
    import train
    from migm_jax.eval.__main__ import main as eval_main
    from migm_jax.training import makedata

    bad = ["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "5"]
    smoke = str(ROOT / "configs" / "smoke.py")
    assert train.main(["--config", smoke, "--workdir", str(tmp_path / "w"), *bad]) == 2
    assert makedata.main(["--config", smoke, "--out", str(tmp_path / "d"), "--images", "2", *bad]) == 2
    assert sample.main(["--demo-model", "random", "--out", str(tmp_path / "s.png"), *bad]) == 2
    inception = ["--inception", str(tmp_path / "i.pth"), "--out"]
    assert eval_main(["ref-stats", "--images", str(tmp_path), *inception, str(tmp_path / "r.npz"), *bad]) == 2
    assert eval_main(["fid", "--weights", str(tmp_path), "--ref-stats", str(tmp_path / "r.npz"), *inception,
                      str(tmp_path / "f.json"), *bad]) == 2
    line = "error: --process-id 5 is out of range for 2 processes: use 0 .. 1"
    assert capsys.readouterr().err.splitlines() == [line] * 5
    assert sorted(os.listdir(tmp_path)) == []


def test_entry_points_accept_them(monkeypatch):
    """The FID commands and sample.py take the launch settings (one process here: nothing is started)."""
    monkeypatch.syspath_prepend(str(ROOT))
    import sample
    from migm_jax.eval import cli_inception

    one = ["--coordinator", "127.0.0.1:1", "--num-processes", "1", "--process-id", "0"]
    assert sample.parse_args(["--demo-model", "random", *one]).num_processes == 1
    for command in (["ref-stats", "--images", "x"], ["fid", "--weights", "w", "--ref-stats", "r.npz"]):
        args = cli_inception.parse_args([*command, "--inception", "i.pth", "--out", "o", *one, "--multihost"])
        assert (args.coordinator, args.process_id, args.multihost) == ("127.0.0.1:1", 0, True)
