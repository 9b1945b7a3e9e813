"""Trajectory capture, TFDS array_record round trip, sample expansion, deterministic order."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("tensorflow_datasets", reason="needs the [data] extra: tensorflow-datasets, array-record")

from migm_jax.sharding import batch_sharding, make_mesh  # noqa: E402
from migm_jax.sampling.schedules import maskgit_schedule, maskgit_train_mask_ratios  # noqa: E402
from migm_jax.training.config import load_config  # noqa: E402
from migm_jax.training.dataset import SampleOrder, TrajectoryReader, read_meta  # noqa: E402
from migm_jax.training.loop import build_family  # noqa: E402
from migm_jax.training.makedata import capture_to_disk  # noqa: E402
from migm_jax.training.trajectories import capture_fn, expand  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def smoke():
    cfg = load_config(os.path.join(ROOT, "configs", "smoke.py"))
    family, teacher, _, configs, _ = build_family(cfg)
    return cfg, family, teacher, configs


def test_expansion_hand_computed():
    # positions: fixed at steps 0, 2, 1, 1, and a class column (-1); mask id 9
    raw = {"prev_feat": np.zeros((1, 5, 2)), "tgt_feat": np.ones((1, 5, 2)), "step": np.array([1], np.int32),
           "ids": np.array([[3, 4, 5, 6, 12]], np.int32), "order": np.array([[0, 2, 1, 1, -1]], np.int32)}
    out = jax.device_get(expand(raw, mask_id=9))
    np.testing.assert_array_equal(out["cur_ids"], [[3, 9, 5, 6, 12]])
    np.testing.assert_array_equal(out["new_map"], [[False, False, True, True, False]])
    np.testing.assert_array_equal(out["mask_ratio"], np.float32([0.25]))
    np.testing.assert_array_equal(out["prev_feat"], raw["prev_feat"])
    np.testing.assert_array_equal(out["tgt_feat"], raw["tgt_feat"])


def test_mask_ratio_equals_original_schedule():
    sche = maskgit_schedule(15, "arccos", 32)
    order = np.concatenate([np.repeat(np.arange(15), sche), [-1]]).astype(np.int32)[None].repeat(14, 0)
    raw = {"prev_feat": np.zeros((14, 1025, 1)), "tgt_feat": np.zeros((14, 1025, 1)), "step": np.arange(14, dtype=np.int32),
           "ids": np.zeros((14, 1025), np.int32), "order": order}
    np.testing.assert_array_equal(np.asarray(expand(raw, 1024)["mask_ratio"]), maskgit_train_mask_ratios(15))


@pytest.fixture(scope="module")
def written(smoke, tmp_path_factory):
    """A 4-image train split (batches of 2, seed 5), a 2-image val split, and the same train
    trajectories recomputed in memory (batch i samples from fold_in(PRNGKey(seed), i))."""
    cfg, family, teacher, configs = smoke
    root = str(tmp_path_factory.mktemp("trajectories"))
    capture_to_disk(family, teacher, configs, root, "train", images=4, seed=5, batch=2, progress=False)
    capture_to_disk(family, teacher, configs, root, "val", images=2, seed=6, batch=2, progress=False)
    mesh = make_mesh(devices=jax.local_devices())
    fn = capture_fn(family, 2, batch_sharding(mesh))
    batches = [jax.device_get(fn(teacher, jax.random.fold_in(jax.random.PRNGKey(5), i))) for i in range(2)]
    return root, {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def test_capture_records_order_tokens_and_features(smoke, written):
    cfg, family, teacher, _ = smoke
    traj = written[1]
    n, t = family.transformer.grid ** 2, family.transformer.seq_len
    assert traj["feat"].shape == (8, family.steps, t, family.transformer.hidden) and traj["feat"].dtype == jnp.bfloat16
    sche = maskgit_schedule(family.steps, "arccos", family.transformer.grid)
    for order in traj["order"]:
        assert order[n] == -1
        np.testing.assert_array_equal(np.bincount(order[:n], minlength=family.steps), sche)
    np.testing.assert_array_equal(traj["half"], [0, 1] * 4)
    np.testing.assert_array_equal(traj["label"][0::2], traj["label"][1::2])
    k, nclass = family.transformer.codebook_size, family.transformer.nclass
    np.testing.assert_array_equal(traj["ids"][0::2, n], traj["label"][0::2] + k + 1)
    np.testing.assert_array_equal(traj["ids"][1::2, n], k + 1 + nclass)
    np.testing.assert_array_equal(traj["ids"][0::2, :n], traj["ids"][1::2, :n])
    assert np.all(traj["ids"][:, :n] < k)
    # the feature entering step 0 is the teacher's on the all-mask state (cond and uncond class tokens)
    ids0 = np.where(traj["order"] >= 0, family.mask_id, traj["ids"])
    f0 = jax.jit(family.teacher_features)(teacher, jnp.asarray(ids0))
    np.testing.assert_allclose(np.asarray(f0), traj["feat"][:, 0].astype(np.float32), atol=2e-2)


def test_write_read_round_trip(smoke, written):
    cfg, family, teacher, configs = smoke
    root, traj = written
    meta = read_meta(root)
    assert meta["steps"] == family.steps and set(meta["splits"]) == {"train", "val"}
    reader = TrajectoryReader(root, "train")
    n_steps = family.steps
    assert reader.n_traj == 8 and reader.n_samples == 8 * (n_steps - 1)
    idx = np.array([0, 7, n_steps - 2, 3 * (n_steps - 1) + 2, reader.n_samples - 1])
    raw = reader.read(idx)
    t, s = np.divmod(idx, n_steps - 1)
    assert raw["prev_feat"].dtype == jnp.bfloat16 and raw["prev_feat"].shape == (5,) + family.feature_shape
    np.testing.assert_array_equal(raw["prev_feat"], traj["feat"][t, s])
    np.testing.assert_array_equal(raw["tgt_feat"], traj["feat"][t, s + 1])
    np.testing.assert_array_equal(raw["step"], s)
    for name in ("ids", "order"):
        assert raw[name].dtype == np.int32
        np.testing.assert_array_equal(raw[name], traj[name][t])
    assert TrajectoryReader(root, "val").n_traj == 4
    with pytest.raises(ValueError, match="no split 'test'"):
        TrajectoryReader(root, "test")


def test_sample_order_is_a_deterministic_sharded_shuffle():
    order = SampleOrder(10, seed=3)
    seq = np.concatenate([order.indices(m, 4) for m in range(5)])
    assert sorted(seq[:10]) == list(range(10)) and sorted(seq[10:20]) == list(range(10))
    np.testing.assert_array_equal(seq, np.concatenate([SampleOrder(10, 3).indices(m, 4) for m in range(5)]))
    halves = [SampleOrder(10, 3).indices(2, 4, p, 2) for p in range(2)]
    np.testing.assert_array_equal(np.concatenate(halves), order.indices(2, 4))
    assert not np.array_equal(seq, np.concatenate([SampleOrder(10, 4).indices(m, 4) for m in range(5)]))


def test_makedata_cli_writes_where_the_config_will_read(tmp_path):
    from migm_jax.training import makedata

    smoke = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "smoke.py")
    out = tmp_path / "data"  # the config's data_dir does not exist before the dataset is written
    code = makedata.main(["--config", smoke, "--set", f"data_dir={out}", "--out", str(out), "--images", "2", "--batch", "2"])
    assert code == 0 and read_meta(str(out))["splits"]["train"]["images"] == 2


def test_makedata_refuses_a_sampler_larger_than_the_device_in_one_line(tmp_path, monkeypatch, capsys):
    """XLA's memory analysis of the trajectory sampler against what the device has (here made 64 KiB): one
    line before anything is written."""
    from migm_jax import memory
    from migm_jax.training import makedata

    monkeypatch.setattr(memory, "device_bytes", lambda device: 2**16)
    out = tmp_path / "data"
    code = makedata.main(["--config", os.path.join(ROOT, "configs", "smoke.py"), "--out", str(out), "--images", "2",
                          "--batch", "2"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: sampling the trajectories of --batch 2 needs ") and "\n" not in err
    assert err.endswith("the cpu has 0.1 MiB; use a smaller --batch, or shard the teacher over more devices with "
                        "--set mesh_fsdp=N"), err
    assert not out.exists()


def test_reader_needs_no_jax_import_first(written):
    """The bf16 features' dtype name resolves in a fresh process that imports only the reader."""
    import subprocess
    import sys

    root, _ = written
    code = f"from migm_jax.training.dataset import TrajectoryReader; print(TrajectoryReader({root!r}, 'train').n_traj)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert res.returncode == 0 and res.stdout.split()[-1] == "8", res.stderr[-2000:]
