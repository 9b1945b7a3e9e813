"""DiMOO sampler: schedules, noise-injected sampling ops, exact replay of the original's recorded generations,
batching, ML-Cache partial recompute, and invariants of the compiled loop."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import run_on_fake_devices, fixture_path, load_npz
from migm_jax.models.llada import LLaDA
from migm_jax.sampling.dimoo import (DiMOOModels, DiMOOSampling, build_sampler, cached_forward, dimoo_step,
                                     gumbel_max_sample, mask_by_random_topk, ml_cache_queries, ml_cache_step,
                                     new_token_maps)
from migm_jax.sampling.dimoo_prompts import PromptBatch, TokenLayout
from migm_jax.sampling.noise import RecordedNoise, image_keys
from migm_jax.sampling.quantile import masked_quantile
from migm_jax.sampling.schedules import (CHEAP, FULL, cache_refresh_plan, dimoo_cosine_schedule, dimoo_keep_n,
                                         dimoo_mask_ratios, dimoo_step_kinds)

OPS = load_npz("sampling_ops.npz")
SCHED = load_npz("schedules.npz")
GEN = load_npz("dimoo_generation", "io.npz")
SMALL = TokenLayout(mask=492, newline=240, boa=510, eoa=511, boi=505, eoi=506, uncond=507, text_vocab_size=512,
                    codebook_size=256)
GRID = (4, 6)  # dimoo_generation: seq_len 24, newline_every 6


# ---------------------------------------------------------------- schedules

@pytest.mark.parametrize("steps", [18, 32, 64])
@pytest.mark.parametrize("vq_len", [256, 1024, 4096])
def test_keep_n_and_mask_ratios(steps, vq_len):
    keep = dimoo_keep_n(steps, vq_len)
    np.testing.assert_array_equal(keep, SCHED[f"dimoo_keep_n__T{steps}__L{vq_len}"])
    np.testing.assert_array_equal(dimoo_mask_ratios(steps, vq_len), SCHED[f"dimoo_mask_ratio_at_step__T{steps}__L{vq_len}"])
    before = np.concatenate([[vq_len], keep[:-1]])
    np.testing.assert_array_equal(before - keep, SCHED[f"dimoo_n_decoded_at_step__T{steps}__L{vq_len}"])


@pytest.mark.parametrize("steps", [18, 32, 64])
def test_cosine_schedule_within_one_ulp(steps):
    """PyTorch's float32 cos (SLEEF) is one ulp off at a few arguments where ours is correctly rounded."""
    ref, ours = SCHED[f"dimoo_cosine_schedule__T{steps}"], dimoo_cosine_schedule(steps)
    assert np.all(np.abs(ref.view(np.int32) - ours.view(np.int32)) <= 1)


@pytest.mark.parametrize("steps", [32, 64])
def test_keep_n_does_not_depend_on_the_last_ulp_of_cos(steps):
    """For N = 32 / 64 (N = 18 hits cos(pi/3) = 0.5 exactly, where both libms agree with us)."""
    for vq_len in (256, 1024, 4096):
        for direction in (-2.0, 2.0):
            shifted = np.nextafter(dimoo_cosine_schedule(steps), np.float32(direction))
            keep = np.maximum(np.floor(np.float32(vq_len) * shifted), 1).astype(np.int64)
            keep[-1] = 0
            np.testing.assert_array_equal(keep, dimoo_keep_n(steps, vq_len))


def test_spec_tables_and_kinds():
    assert dimoo_keep_n(64, 4096)[:4].tolist() == [4094, 4091, 4084, 4076] and dimoo_keep_n(64, 4096)[-3:].tolist() == [200, 100, 0]
    assert np.flatnonzero(cache_refresh_plan(64)).tolist() == list(range(20)) + [24, 29, 34, 39, 44, 49, 54, 59]
    for key in (k for k in SCHED if k.startswith("refresh_steps") and k.endswith("dimoo")):
        _, n, b, _ = key.split("__")
        np.testing.assert_array_equal(dimoo_step_kinds("shortcut", int(n[1:]), int(b[1:])) == FULL, SCHED[key])
    assert dimoo_step_kinds("cache", 10, warmup_ratio=0.3, refresh_interval=2).tolist() == \
        [FULL] * 4 + [CHEAP, FULL, CHEAP, FULL, CHEAP, FULL]
    assert (dimoo_step_kinds("vanilla", 5) == FULL).all()
    with pytest.raises(ValueError, match="unknown mode"):
        dimoo_step_kinds("fast", 5)


# ---------------------------------------------------------------- sampling ops with injected noise

@pytest.mark.parametrize("case", [0, 1, 2])
def test_gumbel_max_sample(case):
    p = f"dimoo_gumbel_max_sample__case{case}__"
    tau = float(OPS[p + "in_tau"])
    u = jnp.asarray(OPS[p + "noise_uniform"]) if tau else None
    out = jax.jit(lambda l, u: gumbel_max_sample(l, tau, u))(jnp.asarray(OPS[p + "in_logits"]), u)
    np.testing.assert_array_equal(out, OPS[p + "out"])


@pytest.mark.parametrize("case", [0, 1, 2])
def test_mask_by_random_topk(case):
    """keep = max(mask_len) for every row, as the original."""
    p = f"dimoo_mask_by_random_topk__case{case}__"
    keep = int(OPS[p + "in_mask_len"].max())
    stay = mask_by_random_topk(jnp.int32(keep), jnp.asarray(OPS[p + "in_probs"]), float(OPS[p + "in_temperature"]),
                               jnp.asarray(OPS[p + "noise_uniform"]))
    np.testing.assert_array_equal(stay, OPS[p + "out_stay_masked"])


def test_random_topk_never_picks_decoded_cells():
    probs = jnp.asarray([[0.9, 0.01, 0.02, 0.5, 0.03]])
    cand = jnp.asarray([[True, False, True, True, False]])
    stay = mask_by_random_topk(jnp.int32(2), probs, 1.0, jnp.full((1, 5), 0.5), cand)
    assert stay.tolist() == [[False, False, True, True, False]]


def small_pipeline():
    """The fixture LLaDA (d 64, 2 layers, vocab 768) and DiMOO shortcut, float32."""
    from migm_jax.convert.dimoo import dimoo_shortcut, llada

    cfg, params = llada(fixture_path("llada"))
    scfg, sparams = dimoo_shortcut(fixture_path("dimoo_shortcut", "shortcut.pth"), cfg)
    return DiMOOModels(cfg, SMALL, scfg, dtype="float32"), {"llada": params, "shortcut": sparams}


@pytest.fixture(scope="module")
def small_models():
    return small_pipeline()


def test_single_steps_match_original(small_models):
    """The dimoo_step fixture (grid 4x6, P = 8, uncond prompt of 4): sampled codes, re-mask, new-token maps
    and embeddings, with the recorded uniforms scattered to the masked cells."""
    models, params = small_models
    for s in (0, 1):
        p = f"dimoo_step__step{s}__"
        x = OPS[p + "in_x"][0]
        code_start = int(OPS[p + "in_code_start"])
        batch = PromptBatch.from_ids([x[:code_start - 2]], [OPS[p + "in_uncon_ids"][0]], GRID, SMALL)
        cells = np.asarray(batch.cond_image_positions()[0])
        assert (np.asarray(batch.cond_ids[0]) == np.where(x == SMALL.mask, SMALL.mask, np.asarray(batch.cond_ids[0]))).all()
        mask = OPS[p + "in_vq_mask"][0][cells]
        n, k = mask.size, OPS[p + "in_logits"].shape[-1]
        logits = np.zeros((1, n, k), np.float32)
        logits[0, mask] = OPS[p + "in_logits"][0]
        u0, u1 = np.full((1, 1, n, k), 0.5, np.float32), np.full((1, 1, n), 0.5, np.float32)
        u0[0, 0, mask], u1[0, 0, mask] = OPS[p + "noise_uniform_sample"][0], OPS[p + "noise_uniform_mask"][0]
        keep = jnp.asarray([int(OPS[p + "in_keep_n"][0, 0])])
        sampling = DiMOOSampling(steps=1, temperature=float(OPS[p + "in_temperature"]))
        tokens, new_mask, new = dimoo_step(sampling, keep, jnp.asarray(x[cells][None], jnp.int32), jnp.asarray(mask[None]),
                                           jnp.asarray(logits), jnp.int32(0), jax.random.PRNGKey(0),
                                           RecordedNoise({"uniform0": u0, "uniform1": u1}), SMALL.text_vocab_size)
        np.testing.assert_array_equal(np.asarray(tokens)[0], OPS[p + "out_x"][0][cells])
        np.testing.assert_array_equal(np.asarray(new_mask)[0], OPS[p + "out_vq_mask"][0][cells])
        assert int(new_mask.sum()) == int(OPS[p + "out_unknown_cnt"][0, 0])
        cond_map, uncond_map = new_token_maps(batch, new)
        np.testing.assert_array_equal(cond_map[0], OPS[p + "out_cond_new_token_mask"][0])
        np.testing.assert_array_equal(uncond_map[0], OPS[p + "out_uncond_new_token_mask"][0])
        # the shortcut's inputs: wte rows of the current sequences at the mapped positions
        cond_ids = jnp.asarray(batch.cond_ids).at[0, cells].set(tokens[0])
        uncond_ids = jnp.asarray(batch.uncond_ids).at[0, np.asarray(batch.uncond_image_positions()[0])].set(tokens[0])
        emb = lambda ids: LLaDA(models.llada, jnp.float32).apply({"params": params["llada"]}, ids, method=LLaDA.embed)
        np.testing.assert_array_equal(emb(cond_ids)[cond_map], OPS[p + "out_cond_new_token"][0])
        np.testing.assert_array_equal(emb(uncond_ids)[uncond_map], OPS[p + "out_uncond_new_token"][0])


# ---------------------------------------------------------------- whole generations

def generation_batch():
    ids, code_start = GEN["in_prompt_ids"][0], int(GEN["in_code_start"])
    batch = PromptBatch.from_ids([ids[:code_start - 2]], [GEN["in_uncon_ids"][0]], GRID, SMALL)
    np.testing.assert_array_equal(batch.cond_ids, GEN["in_prompt_ids"])
    return batch


def masks_before_each_step(mode):
    """(8, 24) bool: masked cells before each step, read off the recorded model / shortcut inputs."""
    cells = np.asarray(generation_batch().cond_image_positions()[0])
    full = range(8) if mode == "vanilla" else (0, 2, 4, 6)
    masks, call = {}, 0
    for s in full:
        masks[s] = GEN[f"{mode}__call_model_in_{2 * call:02d}"][0][cells] == SMALL.mask
        call += 1
    for call, s in enumerate(s for s in range(8) if s not in full):  # shortcut steps: cells fixed at s-1
        masks[s] = masks[s - 1] & ~GEN[f"{mode}__call_sc_map_{2 * call:02d}"][0][cells]
    return np.stack([masks[s] for s in range(8)])


def recorded_noise(mode):
    """The recorded draws (masked cells only, ascending) scattered into full per-step arrays."""
    masks = masks_before_each_step(mode)
    u0, u1 = np.full((8, 1, 24, 256), 0.5, np.float32), np.full((8, 1, 24), 0.5, np.float32)
    for s in range(8):
        u0[s, 0, masks[s]] = GEN[f"{mode}__noise_draw{2 * s:02d}"][0]
        u1[s, 0, masks[s]] = GEN[f"{mode}__noise_draw{2 * s + 1:02d}"][0]
    return RecordedNoise({"uniform0": u0, "uniform1": u1}), masks


@pytest.mark.parametrize("mode", ["vanilla", "shortcut"])
def test_generation_replays_original(small_models, mode):
    """8 steps, cfg 4, budget 4 in shortcut mode, with the original's uniforms: every mask and the final ids."""
    models, params = small_models
    sampling, capture = MODES[mode], mode == "shortcut"
    noise, masks = recorded_noise(mode)
    out = build_sampler(models, sampling, decode=False, capture=capture)(params, generation_batch(),
                                                                         jax.random.PRNGKey(0), noise)
    np.testing.assert_array_equal(np.asarray(out["trace"]["mask"])[:-1, 0], masks[1:])
    assert not np.asarray(out["trace"]["mask"])[-1].any()
    np.testing.assert_array_equal(np.asarray(out["codes"]).reshape(1, -1) + SMALL.text_vocab_size,
                                  GEN[f"{mode}__out_vq_ids"])
    if capture:  # the features each step decided from: the backbone's on full steps, the shortcut's between
        for s in range(8):
            name = f"shortcut__call_model_last_feat_{s:02d}" if s % 2 == 0 else f"shortcut__call_sc_out_{s - 1:02d}"
            for side in range(2):
                ref = GEN[name[:-2] + f"{(s // 2) * 2 + side:02d}"]
                np.testing.assert_allclose(out["trace"]["features"][side][s], ref, atol=1e-4, rtol=0)


# two prompt lengths (row 1 is right-padded); prompt 0 and the settings are the replay's, which shares compilations
PROMPTS = [[56, 170, 94, 221, 134, 169, 167, 35], [12, 99, 7]]
MODES = {
    "vanilla": DiMOOSampling(steps=8),
    "shortcut": DiMOOSampling(steps=8, mode="shortcut", budget=4),
    "reuse": DiMOOSampling(steps=8, mode="reuse", budget=4),
    "cache": DiMOOSampling(steps=8, mode="cache", warmup_ratio=0.2, refresh_interval=2),  # partial at steps 2, 4, 6
}


def batch_of(prompts):
    return PromptBatch.from_ids(prompts, GEN["in_uncon_ids"][0], GRID, SMALL)


def random_draws(b, seed=0):
    rng = np.random.default_rng(seed)
    return {"uniform0": rng.random((8, b, 24, 256), dtype=np.float32), "uniform1": rng.random((8, b, 24), dtype=np.float32)}


def run(small_models, sampling, batch, draws=None, seed=0):
    """The compiled sampler on `batch`; with `draws`, the uniforms come from them (RecordedNoise)."""
    models, params = small_models
    fn = build_sampler(models, sampling, decode=False)
    if draws is None:
        return fn(params, batch, jax.random.PRNGKey(seed))
    return fn(params, batch, jax.random.PRNGKey(seed), RecordedNoise(draws))


@pytest.fixture(scope="module")
def batched_runs(small_models):
    """Each mode on the two-prompt batch with the same recorded uniforms."""
    return {mode: run(small_models, s, batch_of(PROMPTS), random_draws(2)) for mode, s in MODES.items()}


@pytest.mark.parametrize("mode", list(MODES))
def test_each_step_leaves_keep_n_masked(batched_runs, mode):
    out = batched_runs[mode]
    masked_left = np.asarray(out["trace"]["mask"]).sum(-1)  # (N, b)
    np.testing.assert_array_equal(masked_left, np.repeat(dimoo_keep_n(8, 24)[:, None], 2, 1))
    tokens = np.asarray(out["trace"]["tokens"])
    decoded = ~np.asarray(out["trace"]["mask"])
    assert (tokens[decoded] >= 512).all() and (tokens[~decoded] == SMALL.mask).all()
    assert (decoded[1:] >= decoded[:-1]).all()  # a decoded cell is never re-masked
    assert ((tokens[1:] == tokens[:-1]) | ~decoded[:-1]).all()  # ... nor changed
    codes = np.asarray(out["codes"])
    assert codes.shape == (2, 4, 6) and ((codes >= 0) & (codes < 256)).all()
    np.testing.assert_array_equal(codes.reshape(2, -1) + 512, tokens[-1])


def test_modes_differ(batched_runs):
    codes = {m: np.asarray(r["codes"]) for m, r in batched_runs.items()}
    for a, b in (("vanilla", "shortcut"), ("shortcut", "reuse"), ("vanilla", "cache")):
        assert not np.array_equal(codes[a], codes[b]), (a, b)


@pytest.mark.parametrize("mode", ["shortcut", "cache"])
def test_batched_prompts_equal_single_prompts(small_models, batched_runs, mode):
    """Right-padded rows of different prompt lengths decide exactly like separate batch-1 runs (same uniforms)."""
    together, draws = batched_runs[mode], random_draws(2)
    for i, prompt in enumerate(PROMPTS):
        alone = run(small_models, MODES[mode], batch_of([prompt]), {k: v[:, i:i + 1] for k, v in draws.items()})
        np.testing.assert_array_equal(together["trace"]["mask"][:, i], alone["trace"]["mask"][:, 0])
        np.testing.assert_array_equal(together["codes"][i], alone["codes"][0])


def test_padding_to_a_width_multiple_changes_nothing(small_models, batched_runs):
    """The columns `with_width_multiple` appends (the FP8 sampler's padding to GEMM_ROW_MULTIPLE) are never
    attended to: the same uniforms give the same steps and codes."""
    batch = batch_of(PROMPTS)
    padded = batch.with_width_multiple(16)
    for ids, valid, wide, wide_valid in ((batch.cond_ids, batch.cond_valid, padded.cond_ids, padded.cond_valid),
                                         (batch.uncond_ids, batch.uncond_valid, padded.uncond_ids, padded.uncond_valid)):
        w = ids.shape[1]
        assert wide.shape == (2, -(-w // 16) * 16) and wide.shape[1] > w  # both sides really get wider here
        np.testing.assert_array_equal(wide[:, :w], ids)
        np.testing.assert_array_equal(wide_valid[:, :w], valid)
        assert not np.asarray(wide_valid[:, w:]).any()
    out = run(small_models, MODES["shortcut"], padded, random_draws(2))
    np.testing.assert_array_equal(out["trace"]["mask"], batched_runs["shortcut"]["trace"]["mask"])
    np.testing.assert_array_equal(out["codes"], batched_runs["shortcut"]["codes"])


def test_fp8_sampler_stays_close_and_captures_unpadded_features(small_models, batched_runs):
    """matmul='fp8' (emulated here) on the same uniforms: most codes as float32's, not all (really quantised);
    the captured features keep the batch's own width, without the sampler's padding to 16-row multiples."""
    models, params = small_models
    fp8, batch = dataclasses.replace(models, matmul="fp8"), batch_of(PROMPTS)
    out = build_sampler(fp8, MODES["shortcut"], decode=False, capture=True)(
        fp8.prepare_params(params), batch, jax.random.PRNGKey(0), RecordedNoise(random_draws(2)))
    assert [f.shape[2] for f in out["trace"]["features"]] == [batch.cond_ids.shape[1], batch.uncond_ids.shape[1]]
    same = float(np.mean(np.asarray(out["codes"]) == np.asarray(batched_runs["shortcut"]["codes"])))
    assert 0.4 < same < 1.0, same  # 0.604 measured (29 of 48 codes)


def test_image_depends_on_its_own_key_only(small_models):
    """With jax.random noise, image i of a batch (key fold_in(k, i)) equals a batch-1 run given that key."""
    models, params = small_models
    fn = build_sampler(models, DiMOOSampling(steps=8, mode="shortcut", budget=3), decode=False)
    key = jax.random.PRNGKey(5)
    together = fn(params, batch_of(PROMPTS), key)
    for i, prompt in enumerate(PROMPTS):
        alone = fn(params, batch_of([prompt]), image_keys(key, i, 1))
        np.testing.assert_array_equal(together["codes"][i], alone["codes"][0])
    assert not np.array_equal(together["codes"][1], fn(params, batch_of(PROMPTS[1:]), image_keys(key, 0, 1))["codes"][0])


def test_budget_equal_to_steps_is_vanilla(small_models, batched_runs):
    b = run(small_models, DiMOOSampling(steps=8, mode="shortcut", budget=8), batch_of(PROMPTS), random_draws(2))
    np.testing.assert_array_equal(batched_runs["vanilla"]["codes"], b["codes"])


def test_one_compilation_per_configuration_and_seeds(small_models):
    models, params = small_models
    s = MODES["shortcut"]
    fn = build_sampler(models, s, decode=False)
    assert build_sampler(models, s, decode=False) is fn
    before = fn._cache_size()
    codes = [np.asarray(fn(params, batch_of(PROMPTS), jax.random.PRNGKey(seed))["codes"]) for seed in (0, 0, 1)]
    assert fn._cache_size() == before + 1
    np.testing.assert_array_equal(codes[0], codes[1])
    assert not np.array_equal(codes[0], codes[2])


def test_cfg_zero_ignores_uncond_and_greedy_ignores_noise(small_models):
    greedy = DiMOOSampling(steps=4, cfg_scale=0.0, temperature=0.0)
    out = run(small_models, greedy, batch_of(PROMPTS[:1]), seed=0)
    other_uncond = PromptBatch.from_ids(PROMPTS[:1], [3, 4, 5], GRID, SMALL)
    np.testing.assert_array_equal(out["codes"], run(small_models, greedy, other_uncond, seed=1)["codes"])
    guided = dataclasses.replace(greedy, cfg_scale=4.0)
    assert not np.array_equal(run(small_models, guided, batch_of(PROMPTS[:1]))["codes"],
                              run(small_models, guided, other_uncond)["codes"])
    assert not np.array_equal(out["codes"], run(small_models, DiMOOSampling(steps=4, cfg_scale=0.0), batch_of(PROMPTS[:1]))["codes"])


# ---------------------------------------------------------------- ML-Cache

def quantile_case():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 37)).astype(np.float32)
    valid = np.ones((3, 37), bool)
    valid[1, 30:] = False
    return x, valid, np.asarray(masked_quantile(jnp.asarray(x), jnp.asarray(valid), 1 - 0.9))


def test_quantile_matches_numpy():
    x, valid, got = quantile_case()
    for i in range(3):
        np.testing.assert_allclose(got[i], np.quantile(x[i][valid[i]].astype(np.float64), 1 - 0.9), rtol=1e-6)


def test_quantile_matches_torch():
    torch = pytest.importorskip("torch")
    x, valid, got = quantile_case()
    for i in range(3):
        ref = torch.quantile(torch.from_numpy(x[i][valid[i]]), 1 - 0.9).numpy()
        assert got[i] == ref


def test_partial_recompute_equals_the_gathered_original(small_models):
    """The ML-Cache partial call, both static forms (every position as a query / the computed positions
    gathered into n_query rows), equals the original written literally: the selected positions alone as
    queries at their true positions, keys/values from the cached block inputs except at the selected
    positions; unselected logits and cache entries stay as they were."""
    models, params = small_models
    lp = {"params": params["llada"]}
    model = LLaDA(models.llada, jnp.float32)
    ids = jnp.asarray(GEN["shortcut__call_model_in_02"])
    old = jnp.asarray(GEN["shortcut__call_model_in_00"])
    valid = jnp.ones(ids.shape, bool)
    forward = jax.jit(lambda ids, compute, hidden, logits, n: model.apply(
        lp, ids, valid, compute, hidden, logits, 512, 256, n, method=cached_forward), static_argnums=4)
    logits0, hidden = forward(old, valid, [jnp.zeros(ids.shape + (64,))] * 2, jnp.zeros(ids.shape + (256,)), None)
    np.testing.assert_allclose(logits0, GEN["shortcut__call_model_logits_img_00"], atol=1e-4, rtol=0)
    compute = jnp.zeros(ids.shape, bool).at[0, jnp.asarray([0, 5, 24, 32, 39])].set(True)

    def gathered(m, ids, sel, hidden):
        t = m.transformer
        x = t.embed(ids[:, sel])
        pos = jnp.arange(ids.shape[1])[None]
        for block, h in zip(t.blocks, hidden):
            h = h.at[:, sel].set(x)
            x = block(x, sel[None], kv=h, kv_positions=pos)
        return t.image_logits(t.ln_f(x), 512, 256)

    sel = jnp.flatnonzero(compute[0])
    ref = jax.jit(lambda: model.apply(lp, ids, sel, hidden, method=gathered))()
    for n_query in (None, 8):
        logits, new_hidden = forward(ids, compute, hidden, logits0, n_query)
        np.testing.assert_allclose(logits[:, sel], ref, atol=1e-5, rtol=0)
        np.testing.assert_array_equal(logits[~compute], logits0[~compute])
        for h_new, h_old in zip(new_hidden, hidden):
            np.testing.assert_array_equal(h_new[~compute], h_old[~compute])
    # more computed positions than query rows: the on-device fallback computes every position
    step = jax.jit(lambda n: ml_cache_step(model, lp, ids, valid, compute, hidden, logits0, 512, 256, n), static_argnums=0)
    np.testing.assert_allclose(step(2)[0], forward(ids, compute, hidden, logits0, None)[0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(step(8)[0], forward(ids, compute, hidden, logits0, 8)[0], atol=1e-5, rtol=0)
    # everything recomputed = a plain forward
    np.testing.assert_allclose(forward(ids, valid, hidden, logits0, None)[0], GEN["shortcut__call_model_logits_img_02"],
                               atol=1e-4, rtol=0)
    assert ml_cache_queries(40, 0.1) == 13 and ml_cache_queries(4178, 0.1) == 531 and ml_cache_queries(40, 1.0) is None


def test_cache_recomputing_everything_is_vanilla(small_models, batched_runs):
    """cache_ratio 1e-8: q = float32(1 - 1e-8) = 1, the threshold is the max, every position is recomputed."""
    s = DiMOOSampling(steps=8, mode="cache", cache_ratio=1e-8, warmup_ratio=0.0)
    out = run(small_models, s, batch_of(PROMPTS), random_draws(2))
    np.testing.assert_array_equal(batched_runs["vanilla"]["codes"], out["codes"])


# ---------------------------------------------------------------- compilation, errors, sharding

@pytest.mark.parametrize("kw,msg", [
    (dict(mode="shortcut", budget=9, steps=8), r"--budget must be in 2..steps \(8\)"),
    (dict(mode="reuse", steps=8), "mode reuse needs --budget B"),
    (dict(mode="cache", budget=4), "--budget applies to modes shortcut and reuse, not cache"),
    (dict(mode="fast"), "unknown mode"),
    (dict(cfg_scale=-1.0), "cfg scale must be >= 0"),
    (dict(temperature=-0.5), "temperature must be >= 0"),
    (dict(mode="cache", cache_ratio=1.0), r"cache_ratio must be in \(0, 1\)"),
    (dict(mode="cache", refresh_interval=0), "refresh_interval must be >= 1"),
    (dict(steps=1), "steps must be >= 2"),
])
def test_bad_settings_are_rejected(kw, msg):
    with pytest.raises(ValueError, match=msg):
        DiMOOSampling(**kw).validate()


def test_more_steps_than_image_tokens_are_rejected():
    DiMOOSampling(steps=6).validate(6)
    with pytest.raises(ValueError, match="7 steps for an image of 6 tokens: a step would fix none; use 2..6 steps"):
        DiMOOSampling(steps=7).validate(6)


def test_incompatible_models_are_rejected(small_models):
    models, _ = small_models
    with pytest.raises(ValueError, match="mode shortcut needs a shortcut model"):
        build_sampler(dataclasses.replace(models, shortcut=None), DiMOOSampling(steps=4, mode="shortcut", budget=2),
                      decode=False)
    with pytest.raises(ValueError, match="decoding images needs a VQ model config"):
        build_sampler(models, DiMOOSampling(steps=4), decode=True)
    with pytest.raises(ValueError, match="feature capture needs a feature mode"):
        build_sampler(models, MODES["cache"], decode=False, capture=True)
    with pytest.raises(ValueError, match="layout needs 134548 logit columns, LLaDA has 768"):
        build_sampler(dataclasses.replace(models, layout=TokenLayout.real()), DiMOOSampling(steps=4), decode=False)


SHARDED = r"""
import jax, jax.numpy as jnp, numpy as np, sys
sys.path.insert(0, "tests")
from conftest import fixture_path
from test_dimoo_sampler import small_pipeline, PROMPTS, MODES, GEN, GRID, SMALL
from migm_jax.convert.dimoo import llada, llada_abstract_params
from migm_jax.sampling.dimoo import build_sampler
from migm_jax.sampling.dimoo_prompts import PromptBatch
from migm_jax.sharding import make_mesh, param_shardings, shard_params
assert jax.device_count() == 8
models, params = small_pipeline()
mesh = make_mesh(data=2, fsdp=2, tensor=2)
# the converter places every tensor straight onto its shard
_, streamed = llada(fixture_path("llada"), shardings=param_shardings(llada_abstract_params(models.llada), mesh))
q = streamed["transformer"]["blocks_0"]["q_proj"]["kernel"]
assert q.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor") and q.addressable_shards[0].data.shape == (32, 32)
jax.tree_util.tree_map(np.testing.assert_array_equal, streamed, llada(fixture_path("llada"))[1])  # slice reads == whole
sharded = dict(shard_params(params, mesh), llada=streamed)
batch = PromptBatch.from_ids(PROMPTS * 2, GEN["in_uncon_ids"][0], GRID, SMALL)
key = jax.random.PRNGKey(3)
one = build_sampler(models, MODES["shortcut"], decode=False)(params, batch, key)
many = build_sampler(models, MODES["shortcut"], decode=False, mesh=mesh)(sharded, batch, key)
assert len(many["codes"].sharding.device_set) == 8
np.testing.assert_array_equal(one["codes"], many["codes"])
print("SHARDED-OK")
"""


def test_sharded_batch_equals_single_device():
    run_on_fake_devices(SHARDED, "SHARDED-OK")
