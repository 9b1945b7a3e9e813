"""MaskGIT sampler: replay of the original's recorded decisions, and invariants of the compiled loop."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import run_on_fake_devices, load_npz
from migm_jax.sampling.maskgit import MaskGITModels, MaskGITSampling, build_sampler, check_labels, maskgit_step
from migm_jax.sampling.selection import select_top_k
from migm_jax.sampling.noise import RecordedNoise
from migm_jax.sampling.schedules import maskgit_schedule

OPS = load_npz("sampling_ops.npz")
GEN = load_npz("maskgit_generation", "io.npz")


def test_single_steps_match_original_trace():
    """One decision per step on the stored logits (grid 6, 64 codes) with the recorded noise."""
    pre = "maskgit_trace__"
    steps, grid = int(OPS[pre + "param_step"]), int(OPS[pre + "param_patch_size"])
    sampling = MaskGITSampling(steps=steps, cfg_w=float(OPS[pre + "param_w"]), r_temp=float(OPS[pre + "param_r_temp"]),
                               sm_temp=float(OPS[pre + "param_sm_temp"]), sched_mode=str(OPS[pre + "param_sched_mode"]))
    sche = maskgit_schedule(steps, sampling.sched_mode, grid)
    np.testing.assert_array_equal(sche, OPS[pre + "scheduler"])
    step_fn = jax.jit(lambda *a: maskgit_step(sampling, jnp.asarray(sche), *a))
    noise = RecordedNoise({"categorical": np.stack([OPS[f"{pre}step{i}__pred_code"].reshape(2, -1) for i in range(steps)]),
                           "gumbel": np.stack([OPS[f"{pre}step{i}__gumbel_raw"] for i in range(steps)])})
    for i in range(steps):
        s = f"{pre}step{i}__"
        logits2 = np.concatenate([OPS[s + "logits_cond"], OPS[s + "logits_uncond"]])
        code, mask, new = step_fn(jnp.asarray(OPS[s + "code_in"].reshape(2, -1), jnp.int32),
                                  jnp.asarray(OPS[s + "mask_in"] > 0.5), jnp.asarray(logits2), jnp.int32(i),
                                  jax.random.PRNGKey(0), noise)
        np.testing.assert_array_equal(code, OPS[s + "code_out"].reshape(2, -1))
        np.testing.assert_array_equal(mask, OPS[s + "mask_out"] > 0.5)
        assert new.sum(1).tolist() == [int(OPS[s + "t"])] * 2
    np.testing.assert_array_equal(code.reshape(2, grid, grid), OPS[pre + "final_code"])


def test_top_k_prefers_lower_position_on_ties():
    code = jnp.zeros((1, 5), jnp.int32)
    mask = jnp.asarray([[True, True, False, True, True]])
    conf = jnp.asarray([[0.5, 0.9, -jnp.inf, 0.9, 0.9]])
    code, mask, new = select_top_k(code, mask, jnp.arange(1, 6)[None], conf, 2)
    assert new.tolist() == [[False, True, False, True, False]]
    assert code.tolist() == [[0, 2, 0, 4, 0]] and mask.tolist() == [[True, False, False, False, True]]


def recorded(mode):
    return RecordedNoise({"categorical": np.stack([GEN[f"{mode}__step{i:02d}__pred_code"] for i in range(8)]),
                          "gumbel": np.stack([GEN[f"{mode}__step{i:02d}__gumbel_raw"] for i in range(8)])})


@pytest.fixture(scope="module")
def pipeline(maskgit_small, maskgit_shortcut_small):
    models = MaskGITModels(maskgit_small[0], maskgit_shortcut_small[0])
    return models, {"transformer": maskgit_small[1], "shortcut": maskgit_shortcut_small[1]}


@pytest.mark.parametrize("mode", ["vanilla", "shortcut"])
def test_generation_replays_original(pipeline, mode):
    """The whole 8-step run (budget 4 in shortcut mode) with the original's draws: every step, every code."""
    models, params = pipeline
    sampling = MaskGITSampling(steps=8, mode=mode, budget=4 if mode == "shortcut" else None)
    out = build_sampler(models, sampling, capture=True, decode=False)(
        params, jnp.asarray(GEN["in_labels"], jnp.int32), jax.random.PRNGKey(0), recorded(mode))
    np.testing.assert_array_equal(out["codes"], GEN[f"{mode}__out_final_code"])
    for i in range(8):
        np.testing.assert_array_equal(out["trace"]["mask"][i].reshape(2, 8, 8), GEN[f"{mode}__step{i:02d}__mask_out"] > 0.5)
    full_steps = range(8) if mode == "vanilla" else [0, 2, 4, 6]
    for call, i in enumerate(full_steps):  # the tokens each base-model call saw, and its feature
        before = np.full((2, 64), 1024) if i == 0 else np.asarray(out["trace"]["codes"][i - 1])
        np.testing.assert_array_equal(np.concatenate([before, before]).reshape(4, 8, 8), GEN[f"{mode}__call_vit_in_{call:02d}"])
        if mode == "shortcut":
            np.testing.assert_allclose(out["trace"]["features"][i], GEN[f"shortcut__call_vit_last_feat_{call:02d}"], atol=1e-4)
    if mode == "shortcut":
        for call, i in enumerate([1, 3, 5, 7]):
            np.testing.assert_allclose(out["trace"]["features"][i], GEN[f"shortcut__call_sc_out_{call:02d}"], atol=1e-4)


def run(pipeline, sampling, labels=(3, 5, 7), seed=0, **kw):
    models, params = pipeline
    return build_sampler(models, sampling, decode=False, **kw)(params, jnp.asarray(labels, jnp.int32), jax.random.PRNGKey(seed))


def test_budget_equal_to_steps_is_vanilla(pipeline):
    a = run(pipeline, MaskGITSampling(steps=6))
    b = run(pipeline, MaskGITSampling(steps=6, mode="shortcut", budget=6))
    np.testing.assert_array_equal(a["codes"], b["codes"])


@pytest.mark.parametrize("mode,budget", [("vanilla", None), ("shortcut", 3), ("reuse", 3)])
def test_each_step_fixes_the_scheduled_tokens(pipeline, mode, budget):
    out = run(pipeline, MaskGITSampling(steps=7, mode=mode, budget=budget, randomize="warm_up"))
    masked_left = np.asarray(out["trace"]["mask"]).sum(-1)  # (N, b)
    expected = 64 - np.cumsum(maskgit_schedule(7, "arccos", 8))
    np.testing.assert_array_equal(masked_left, np.repeat(expected[:, None], 3, 1))
    codes = np.asarray(out["codes"])
    assert ((codes >= 0) & (codes < 1024)).all()


def test_same_key_same_codes_and_modes_differ(pipeline):
    s = MaskGITSampling(steps=6, mode="shortcut", budget=3)
    a, b = run(pipeline, s), run(pipeline, s)
    np.testing.assert_array_equal(a["codes"], b["codes"])
    assert not np.array_equal(a["codes"], run(pipeline, s, seed=1)["codes"])
    assert not np.array_equal(a["codes"], run(pipeline, dataclasses.replace(s, mode="reuse"))["codes"])


def test_one_compilation_per_configuration(pipeline):
    models, params = pipeline
    fn = build_sampler(models, MaskGITSampling(steps=5, mode="shortcut", budget=2), decode=False)
    assert build_sampler(models, MaskGITSampling(steps=5, mode="shortcut", budget=2), decode=False) is fn
    for seed in range(3):
        fn(params, jnp.asarray([1, 2], jnp.int32), jax.random.PRNGKey(seed))
    assert fn._cache_size() == 1


@pytest.mark.parametrize("kw,msg", [
    (dict(mode="shortcut", budget=9, steps=8), r"--budget must be in 2..steps \(8\)"),
    (dict(mode="shortcut", budget=1, steps=8), r"--budget must be in 2..steps"),
    (dict(mode="reuse", steps=8), "mode reuse needs --budget B"),
    (dict(mode="vanilla", budget=4, steps=8), "--budget applies to modes shortcut and reuse, not vanilla; .* --steps 4"),
    (dict(randomize="gumbel"), "randomize must be one of"),
    (dict(mode="fast"), "unknown mode"),
])
def test_bad_settings_are_rejected(kw, msg):
    with pytest.raises(ValueError, match=msg):
        MaskGITSampling(**kw).validate()


def test_labels_out_of_range():
    check_labels(np.asarray([0, 999]), 1000)
    with pytest.raises(ValueError, match=r"label 1000 is outside \[0, 1000\)"):
        check_labels(np.asarray([5, 1000]), 1000)


SHARDED = r"""
import jax, jax.numpy as jnp, numpy as np, sys
sys.path.insert(0, "tests")
from conftest import fixture_path
from migm_jax.convert.maskgit import maskgit_transformer, maskgit_shortcut
from migm_jax.sampling.maskgit import MaskGITModels, MaskGITSampling, build_sampler
from migm_jax.sharding import make_mesh
assert jax.device_count() == 8
tc, tp = maskgit_transformer(fixture_path("maskgit_transformer", "MaskGIT_small.pth"), heads=4)
sc, sp = maskgit_shortcut(fixture_path("maskgit_shortcut", "shortcut.pth"), heads=4)
models, params = MaskGITModels(tc, sc), {"transformer": tp, "shortcut": sp}
s = MaskGITSampling(steps=6, mode="shortcut", budget=3)
labels, key = jnp.arange(8, dtype=jnp.int32) * 101, jax.random.PRNGKey(3)
one = build_sampler(models, s, decode=False)(params, labels, key)
many = build_sampler(models, s, decode=False, mesh=make_mesh())(params, labels, key)
assert len(many["codes"].sharding.device_set) == 8
np.testing.assert_array_equal(one["codes"], many["codes"])
print("SHARDED-OK")
"""


def test_sharded_batch_equals_single_device():
    run_on_fake_devices(SHARDED, "SHARDED-OK")
