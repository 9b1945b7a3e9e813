"""MaskGIT sampler: replay of the original's recorded decisions, and invariants of the compiled loop."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import run_on_fake_devices, load_npz
import migm_jax.sampling.maskgit as maskgit_module
from migm_jax.models.maskgit import MaskTransformer
from migm_jax.sampling.maskgit import MaskGITModels, MaskGITSampling, build_sampler, check_labels, maskgit_step
from migm_jax.sampling.selection import select_top_k
from migm_jax.sampling.noise import RecordedNoise, image_keys
from migm_jax.sampling.schedules import FULL, maskgit_schedule, step_kinds

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


class SpyNoise:
    """Eager-only noise source: returns the recorded draws and keeps the logits handed to `categorical`."""

    def __init__(self, pred, gumbel):
        self.pred, self.gumbel_raw, self.logits = pred, gumbel, {}

    def categorical(self, key, step, logits):
        self.logits[int(step)] = np.asarray(logits)
        return jnp.asarray(self.pred[int(step)], jnp.int32)

    def gumbel(self, key, step, shape):
        return jnp.asarray(self.gumbel_raw[int(step)], jnp.float32).reshape(shape)

    def uniform(self, key, step, shape, slot=0):
        raise AssertionError("randomize linear must not draw uniforms")


def test_single_steps_match_original_intermediates(monkeypatch):
    """The continuous values of every step of the trace (softmax input, prob, scaled gumbel, confidence handed
    to top-k, top-k values) against the original at atol 1e-4 (fixture README). The step runs eagerly; the
    values are read where the port hands them on: the logits given to the noise source, the probability given
    to `confidence` and its result, the score given to `select_top_k`."""
    pre = "maskgit_trace__"
    steps = int(OPS[pre + "param_step"])
    sampling = MaskGITSampling(steps=steps, cfg_w=float(OPS[pre + "param_w"]), r_temp=float(OPS[pre + "param_r_temp"]),
                               sm_temp=float(OPS[pre + "param_sm_temp"]), sched_mode=str(OPS[pre + "param_sched_mode"]))
    seen = {}

    def spy_confidence(prob_of_pred, *args):
        out = confidence(prob_of_pred, *args)
        seen["p_pred"], seen["conf_raw"] = np.asarray(prob_of_pred), np.asarray(out)
        return out

    def spy_top_k(code, mask, pred, conf, k):
        seen["conf"], seen["k"] = np.asarray(conf), int(k)
        return select_top_k(code, mask, pred, conf, k)

    confidence = maskgit_module.confidence
    monkeypatch.setattr(maskgit_module, "confidence", spy_confidence)
    monkeypatch.setattr(maskgit_module, "select_top_k", spy_top_k)
    noise = SpyNoise([OPS[f"{pre}step{i}__pred_code"].reshape(2, -1) for i in range(steps)],
                     [OPS[f"{pre}step{i}__gumbel_raw"] for i in range(steps)])
    sche = jnp.asarray(OPS[pre + "scheduler"], jnp.int32)
    close = dict(atol=1e-4, rtol=0)
    for i in range(steps):
        s = f"{pre}step{i}__"
        seen.clear()
        logits2 = np.concatenate([OPS[s + "logits_cond"], OPS[s + "logits_uncond"]])
        code, mask, _ = maskgit_step(sampling, sche, jnp.asarray(OPS[s + "code_in"].reshape(2, -1), jnp.int32),
                                     jnp.asarray(OPS[s + "mask_in"] > 0.5), jnp.asarray(logits2), jnp.int32(i),
                                     jax.random.PRNGKey(0), noise)
        assert set(seen) == {"p_pred", "conf_raw", "conf", "k"}, f"step {i}: the step did not go through the spies"
        np.testing.assert_allclose(noise.logits[i], OPS[s + "softmax_input"], **close, err_msg=f"step {i} softmax_input")
        np.testing.assert_allclose(jax.nn.softmax(noise.logits[i], axis=-1), OPS[s + "prob"], **close,
                                   err_msg=f"step {i} prob")
        pred = OPS[s + "pred_code"].reshape(2, -1)
        np.testing.assert_allclose(seen["p_pred"], np.take_along_axis(OPS[s + "prob"], pred[..., None], -1)[..., 0],
                                   **close, err_msg=f"step {i} prob of the sampled code")
        masked = OPS[s + "mask_in"] > 0.5
        np.testing.assert_allclose((seen["conf_raw"] - np.log(seen["p_pred"]))[masked], OPS[s + "gumbel_scaled"][masked],
                                   **close, err_msg=f"step {i} gumbel_scaled")
        np.testing.assert_allclose(seen["conf"], OPS[s + "conf_for_topk"], **close, err_msg=f"step {i} conf_for_topk")
        t = int(OPS[s + "t"])
        assert seen["k"] == t
        np.testing.assert_allclose(-np.sort(-seen["conf"], axis=1)[:, :t], OPS[s + "topk_values"], **close,
                                   err_msg=f"step {i} topk_values")
        np.testing.assert_array_equal(code, OPS[s + "code_out"].reshape(2, -1))
        np.testing.assert_array_equal(mask, OPS[s + "mask_out"] > 0.5)


def test_top_k_prefers_lower_position_on_ties():
    code = jnp.zeros((1, 5), jnp.int32)
    mask = jnp.asarray([[True, True, False, True, True]])
    conf = jnp.asarray([[0.5, 0.9, -jnp.inf, 0.9, 0.9]])
    code, mask, new = select_top_k(code, mask, jnp.arange(1, 6)[None], conf, 2)
    assert new.tolist() == [[False, True, False, True, False]]
    assert code.tolist() == [[0, 2, 0, 4, 0]] and mask.tolist() == [[True, False, False, False, True]]


def expected_top_k(score, mask, k):
    """numpy reference: the k highest scores among the masked positions of each row, ties to the lower index."""
    score = np.where(mask, score, -np.inf)
    selected = np.zeros(mask.shape, bool)
    for r in range(mask.shape[0]):
        order = np.argsort(-score[r], kind="stable")
        selected[r, order[:k]] = True
    return selected & mask


def randomize_case(seed=0, b=2, n=12, k_codes=8):
    """Logits (2b, n, K), sampled codes, mask and adversarial gumbel draws. Row 0 is made of pairs: position
    j + n/2 has the logits and the code of position j, so every probability of row 0 occurs twice (exact ties)."""
    rng = np.random.default_rng(seed)
    logits2 = rng.normal(0, 2, (2 * b, n, k_codes)).astype(np.float32)
    pred = rng.integers(0, k_codes, (b, n)).astype(np.int32)
    h = n // 2
    logits2[[0, b], h:] = logits2[[0, b], :h]
    pred[0, h:] = pred[0, :h]
    mask = np.ones((b, n), bool)
    mask[0, [1, 10]] = False  # pair 4/10 loses one member, pair 1/7 too
    mask[1, [0, 5, 6]] = False
    code = np.where(mask, 1000, rng.integers(0, k_codes, (b, n))).astype(np.int32)
    return logits2, pred, mask, code


@functools.lru_cache(maxsize=None)
def jitted_step(sampling):
    return jax.jit(lambda *a: maskgit_step(sampling, *a))


def run_step(sampling, logits2, pred, mask, code, step, k, draws):
    sche = jnp.full((sampling.steps,), k, jnp.int32)
    noise = RecordedNoise({"categorical": np.repeat(pred[None], sampling.steps, 0), **draws})
    out = jitted_step(sampling)(sche, jnp.asarray(code), jnp.asarray(mask), jnp.asarray(logits2), jnp.int32(step),
                                jax.random.PRNGKey(0), noise)
    return [np.asarray(x) for x in out]


@pytest.mark.parametrize("step", [0, 4])
def test_randomize_none_ranks_by_probability_of_the_sampled_code(step):
    """randomize='none': the fixed positions are the top-k of prob[pred] (after CFG), ties to the lower index;
    the gumbel / uniform draws on offer (ranking the other way round) are ignored."""
    sampling = MaskGITSampling(steps=6, randomize="none", cfg_w=2.8, sm_temp=1.3)
    logits2, pred, mask, code = randomize_case()
    b, n = pred.shape
    w = 2.8 * step / 5
    comb = ((1 + w) * logits2[:b].astype(np.float64) - w * logits2[b:].astype(np.float64)) * 1.3
    prob = np.exp(comb - comb.max(-1, keepdims=True))
    prob /= prob.sum(-1, keepdims=True)
    p_pred = np.take_along_axis(prob, pred[..., None], -1)[..., 0]
    # float32 rounding must not be able to reorder distinct values: neighbours differ by more than 0.1 %
    for r in range(b):
        v = np.unique(p_pred[r][mask[r]])
        assert (v[1:] / v[:-1]).min() > 1.001
    assert (p_pred[0, :6] == p_pred[0, 6:]).all()
    rank = np.argsort(np.argsort(-p_pred, axis=1), axis=1).astype(np.float32)  # 0 = best p -> lowest draws
    draws = {"gumbel": np.repeat(50 * rank[None], 6, 0), "uniform0": np.repeat((rank / n)[None], 6, 0)}
    n_masked = mask.sum(1).min()
    for k in range(1, n_masked + 1):
        new_code, new_mask, new = run_step(sampling, logits2, pred, mask, code, step, k, draws)
        sel = expected_top_k(p_pred, mask, k)
        np.testing.assert_array_equal(new, sel, err_msg=f"k={k}")
        np.testing.assert_array_equal(new_mask, mask & ~sel)
        np.testing.assert_array_equal(new_code, np.where(sel, pred, code))
    # the tie rule is actually exercised: at some k exactly one member of a tied pair of row 0 is fixed
    tied = [k for k in range(1, n_masked + 1)
            if any(expected_top_k(p_pred, mask, k)[0, j] != expected_top_k(p_pred, mask, k)[0, j + 6]
                   for j in range(6) if mask[0, j] and mask[0, j + 6])]
    assert tied


@pytest.mark.parametrize("step", [0, 4])
def test_randomize_random_ranks_by_the_uniform_draw_only(step):
    """randomize='random': the fixed positions are the top-k of the uniform draw (slot 0), ties to the lower
    index, whatever the logits; the gumbel draw on offer is ignored."""
    sampling = MaskGITSampling(steps=6, randomize="random")
    logits2, pred, mask, code = randomize_case()
    b, n = pred.shape
    rng = np.random.default_rng(1)
    u = rng.random((b, n)).astype(np.float32)
    u[0, 8], u[1, 3] = u[0, 2], u[1, 9]  # exact ties
    draws = {"uniform0": np.repeat(u[None], 6, 0), "gumbel": np.repeat(-50 * u[None], 6, 0)}
    other_logits = np.random.default_rng(2).normal(0, 5, logits2.shape).astype(np.float32)
    for k in range(1, mask.sum(1).min() + 1):
        sel = expected_top_k(u, mask, k)
        for lg in (logits2, other_logits):
            new_code, new_mask, new = run_step(sampling, lg, pred, mask, code, step, k, draws)
            np.testing.assert_array_equal(new, sel, err_msg=f"k={k}")
            np.testing.assert_array_equal(new_mask, mask & ~sel)
            np.testing.assert_array_equal(new_code, np.where(sel, pred, code))


def test_randomize_random_whole_run_follows_the_draws(pipeline):
    """A whole compiled run with randomize='random': every step fixes the top sche[i] uniforms among the
    still-masked positions and writes the injected codes there; the model's logits play no part."""
    models, params = pipeline
    steps, b, n = 6, 2, 64
    rng = np.random.default_rng(3)
    cat = rng.integers(0, 1024, (steps, b, n)).astype(np.int32)
    u = rng.random((steps, b, n)).astype(np.float32)
    noise = RecordedNoise({"categorical": cat, "uniform0": u})
    out = build_sampler(models, MaskGITSampling(steps=steps, randomize="random"), decode=False)(
        params, jnp.asarray([3, 5], jnp.int32), jax.random.PRNGKey(0), noise)
    sche = maskgit_schedule(steps, "arccos", 8)
    code, mask = np.full((b, n), 1024), np.ones((b, n), bool)
    for i in range(steps):
        sel = expected_top_k(u[i], mask, sche[i])
        code, mask = np.where(sel, cat[i], code), mask & ~sel
        np.testing.assert_array_equal(out["trace"]["mask"][i], mask, err_msg=f"step {i}")
        np.testing.assert_array_equal(out["trace"]["codes"][i], code, err_msg=f"step {i}")
    assert not mask.any()
    np.testing.assert_array_equal(out["codes"], code.reshape(b, 8, 8))


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


def test_reuse_keeps_the_last_full_feature(pipeline):
    """mode='reuse': every cheap step decides from exactly the feature of the most recent full step (bit for
    bit, also two cheap steps in a row); every full step recomputes the backbone on the current tokens
    (checked against a separate backbone call), so the feature changes there and is stale at cheap steps."""
    models, params = pipeline
    steps, budget, labels = 8, 3, np.asarray([3, 5, 7])
    kinds = step_kinds("reuse", steps, budget)
    assert kinds[0] == FULL and any(kinds[i] != FULL and kinds[i + 1] != FULL for i in range(steps - 1))
    out = build_sampler(models, MaskGITSampling(steps=steps, mode="reuse", budget=budget), capture=True, decode=False)(
        params, jnp.asarray(labels, jnp.int32), jax.random.PRNGKey(0))
    feats, codes = np.asarray(out["trace"]["features"]), np.asarray(out["trace"]["codes"])
    b = len(labels)
    assert feats.shape == (steps, 2 * b, 65, 64)
    backbone = jax.jit(lambda c: MaskTransformer(models.transformer).apply(
        {"params": params["transformer"]}, jnp.concatenate([c, c]).reshape(2 * b, 8, 8),
        jnp.asarray(np.concatenate([labels, labels]), jnp.int32),
        jnp.asarray([False] * b + [True] * b), method=MaskTransformer.features))
    last_full = None
    for i in range(steps):
        before = np.full((b, 64), 1024, np.int32) if i == 0 else codes[i - 1]
        fresh = np.asarray(backbone(jnp.asarray(before)))
        if kinds[i] == FULL:
            np.testing.assert_allclose(feats[i], fresh, atol=1e-4, rtol=0, err_msg=f"full step {i}")
            if last_full is not None:
                assert np.abs(feats[i] - feats[last_full]).max() > 1e-2, f"full step {i} did not refresh"
            last_full = i
        else:
            np.testing.assert_array_equal(feats[i], feats[last_full], err_msg=f"cheap step {i} vs full step {last_full}")
            assert np.abs(feats[i] - fresh).max() > 1e-2, f"cheap step {i} recomputed instead of reusing"


def test_image_depends_on_its_own_key_only(pipeline):
    """Image i of a batch (key fold_in(k, i)) equals a batch-1 run given that key, whatever else is in the batch."""
    models, params = pipeline
    fn = build_sampler(models, MaskGITSampling(steps=5, mode="shortcut", budget=3), decode=False)
    key, labels = jax.random.PRNGKey(4), jnp.asarray([3, 5, 7], jnp.int32)
    together = np.asarray(fn(params, labels, key)["codes"])
    for i in range(3):
        alone = fn(params, labels[i:i + 1], image_keys(key, i, 1))["codes"]
        np.testing.assert_array_equal(together[i], alone[0])
    assert not np.array_equal(together[1], fn(params, labels[1:2], image_keys(key, 0, 1))["codes"][0])


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
