"""Lumina-DiMOO policy for the hybrid loop: CFG over two sequences, Gumbel-max sampling, random top-k re-masking.

Per step s (the original's `generate_image_shortcut` / `generate_image`, batch-1 loop made static):
  logits = (1 + cfg) * cond - cfg * uncond at the image cells (cond and uncond sequences have different
  prompts, hence different lengths and positions; the image cells are aligned one-to-one);
  sampled = argmax(logits / T + g), g = -log(-log(u + 1e-20) + 1e-20), u = uniform slot 0 (b, n_img, K);
  confidence = log(max(p(sampled), 1e-20)) + T * g', g' from uniform slot 1 (b, n_img);
  the keep_n[s] least confident still-masked cells stay masked, the other masked cells take `sampled`.
Cells already decoded never change and are never re-masked. Everything is a mask over the full image
region, so shapes are static and one program serves a whole configuration.

Step kinds (`dimoo_step_kinds`): FULL runs LLaDA on both sequences. CHEAP is, per mode,
  shortcut: DiMOOShortcut(prev feature, wte of the current tokens, new-token map, keep_n[s-1]/n_img);
  reuse:    the previous feature unchanged;
  cache:    ML-Cache partial recompute (`ml_cache_step`).

Precision: LLaDA and the shortcut run in `DiMOOModels.dtype`; the CFG combination is done in that dtype
(bf16 like the original), the sampling math (softmax, Gumbel, confidences) in float32 (the original does it
in bf16 with bf16-quantised uniforms; its draws cannot be reproduced anyway).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from migm_jax.compile_options import cublas_gemm_options
from migm_jax.models.dimoo_shortcut import DiMOOShortcut, DiMOOShortcutConfig
from migm_jax.models.fp8 import GEMM_ROW_MULTIPLE, quantize_llada
from migm_jax.models.layers import cast_kernels
from migm_jax.models.llada import LLaDA, LLaDAConfig
from migm_jax.models.vqmodel import VQModelConfig
from migm_jax.sampling.dimoo_prompts import PromptBatch, TokenLayout, region_length
from migm_jax.sampling.loop import hybrid_loop
from migm_jax.sampling.selection import select_top_k
from migm_jax.sampling.noise import JaxNoise, row_keys, step_keys
from migm_jax.sampling.quantile import masked_quantile
from migm_jax.sampling.schedules import dimoo_keep_n, dimoo_mask_ratios, dimoo_step_kinds

MODES = ("vanilla", "shortcut", "reuse", "cache")


@dataclasses.dataclass(frozen=True)
class DiMOOSampling:
    """Sampler settings; defaults are the original's infer.py (N=64, cfg 4, temperature 1) and ML-Cache defaults."""

    steps: int = 64
    mode: str = "vanilla"  # vanilla | shortcut | reuse | cache
    budget: Optional[int] = None  # full steps in shortcut / reuse mode
    cfg_scale: float = 4.0  # 0 = no uncond branch (cond logits alone, as the original)
    temperature: float = 1.0  # Gumbel scale of both the token sampling and the confidence; 0 = greedy
    cache_ratio: float = 0.9  # ML-Cache: fraction of positions served from the cache on a partial step
    refresh_interval: int = 5
    warmup_ratio: float = 0.3
    no_prompt: bool = False  # shortcut: do not mark the cond prompt as new tokens

    def validate(self, n_img: Optional[int] = None) -> None:
        """Raises ValueError with a one-line explanation for an impossible configuration; given the image's
        token count `n_img`, also for more steps than tokens (as MaskGIT refuses steps its grid cannot take)."""
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.steps < 2:
            raise ValueError(f"steps must be >= 2, got {self.steps}")
        if n_img is not None and self.steps > n_img:
            raise ValueError(f"{self.steps} steps for an image of {n_img} tokens: a step would fix none; "
                             f"use 2..{n_img} steps")
        for name in ("cfg_scale", "temperature", "cache_ratio", "warmup_ratio"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}")
        if self.cfg_scale < 0:
            raise ValueError(f"cfg scale must be >= 0, got {self.cfg_scale}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.cache_ratio < 1.0:
            raise ValueError(f"cache_ratio must be in (0, 1), got {self.cache_ratio}")
        self.kinds()  # also checks the budget

    def kinds(self) -> np.ndarray:
        """(steps,) FULL / CHEAP per step."""
        return dimoo_step_kinds(self.mode, self.steps, self.budget, self.warmup_ratio, self.refresh_interval)


SAMPLE_DEFAULTS = ("budget", "height", "width", "prompts")  # 'sampling' keys that are sample.py's defaults only


def trajectory_sampling(settings: dict) -> DiMOOSampling:
    """The vanilla sampler of a training config's `sampling` dict (exported as the weights' 'sampling'
    config). Its SAMPLE_DEFAULTS keys are what sample.py uses when not told otherwise (the recommended
    shortcut budget, the image size in pixels, the default prompts), not settings of the trajectories."""
    return DiMOOSampling(**{**{k: v for k, v in settings.items() if k not in SAMPLE_DEFAULTS}, "mode": "vanilla"})


@dataclasses.dataclass(frozen=True)
class DiMOOModels:
    """The modules of one DiMOO-Shortcut pipeline (shortcut / vq may be None)."""

    llada: LLaDAConfig
    layout: TokenLayout
    shortcut: Optional[DiMOOShortcutConfig] = None
    vq: Optional[VQModelConfig] = None
    dtype: str = "bfloat16"  # compute dtype of LLaDA and the shortcut: bfloat16 | float32
    attention_impl: Optional[str] = None  # None (exact XLA) | 'cudnn' | 'xla'
    vq_dtype: str = "float32"
    matmul: Optional[str] = None  # None: LLaDA's projections in `dtype`; 'fp8': on `fp8.quantize_llada` params

    def prepare_params(self, params: dict) -> dict:
        """The params as this configuration's samplers take them: with matmul='fp8' LLaDA's block kernels
        quantised (`fp8.quantize_llada`, once, before compiling; the sampler never re-quantises)."""
        return dict(params, llada=quantize_llada(params["llada"])) if self.matmul == "fp8" else params

    def validate(self, sampling: DiMOOSampling, decode: bool) -> None:
        """Raises ValueError when the parts cannot serve `sampling`."""
        lay = self.layout
        if self.matmul not in (None, "fp8"):
            raise ValueError(f"matmul must be None or 'fp8', got {self.matmul!r}")
        if lay.vocab_size > self.llada.embedding_size:
            raise ValueError(f"layout needs {lay.vocab_size} logit columns, LLaDA has {self.llada.embedding_size}")
        if sampling.mode == "shortcut":
            if self.shortcut is None:
                raise ValueError("mode shortcut needs a shortcut model")
            if self.shortcut.d_model != self.llada.d_model:
                raise ValueError(f"shortcut width {self.shortcut.d_model} != LLaDA d_model {self.llada.d_model}")
        if decode:
            if self.vq is None:
                raise ValueError("decoding images needs a VQ model config")
            if self.vq.num_vq_embeddings != lay.codebook_size:
                raise ValueError(f"VQ codebook {self.vq.num_vq_embeddings} != layout codebook {lay.codebook_size}")


def gumbel_from_uniform(u: jax.Array) -> jax.Array:
    """The original's gumbel_noise transform: -log(-log(u + 1e-20) + 1e-20), float32."""
    u = u.astype(jnp.float32)
    return -jnp.log(-jnp.log(u + 1e-20) + 1e-20)


def gumbel_max_sample(logits: jax.Array, temperature: float, u: Optional[jax.Array]) -> jax.Array:
    """argmax(logits / T + gumbel(u)) over the last axis (first index on ties); T = 0: plain argmax, u unused.

    logits, u: (..., K) -> (...) int32."""
    if temperature == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return jnp.argmax(logits / temperature + gumbel_from_uniform(u), axis=-1).astype(jnp.int32)


def remask_confidence(probs: jax.Array, temperature: float, u: jax.Array) -> jax.Array:
    """log(max(p, 1e-20)) + T * gumbel(u): (...) -> (...) float32 (higher = more confident)."""
    return jnp.log(jnp.maximum(probs.astype(jnp.float32), 1e-20)) + temperature * gumbel_from_uniform(u)


def mask_by_random_topk(keep_n: jax.Array, probs: jax.Array, temperature: float, u: jax.Array,
                        candidates: Optional[jax.Array] = None) -> jax.Array:
    """Which cells stay masked: the keep_n lowest `remask_confidence` among `candidates` (default: all).

    keep_n: scalar or (b, 1); probs, u, candidates: (b, n). Returns (b, n) bool, True = stays masked;
    non-candidates are never chosen. Ties: the higher position stays masked (PyTorch's topk order is
    unspecified).
    """
    candidates = jnp.ones(probs.shape, bool) if candidates is None else candidates
    conf = jnp.where(candidates, remask_confidence(probs, temperature, u), -jnp.inf)
    n_fix = jnp.sum(candidates, axis=-1, keepdims=True) - keep_n
    _, stay, _ = select_top_k(jnp.zeros(probs.shape, jnp.int32), candidates, jnp.zeros(probs.shape, jnp.int32),
                              conf, n_fix)
    return stay


def dimoo_step(sampling: DiMOOSampling, keep_n: jax.Array, tokens: jax.Array, mask: jax.Array, logits: jax.Array,
               step: jax.Array, key: jax.Array, noise, text_vocab_size: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One DiMOO decision on the CFG-combined image logits.

    tokens (b, n) int32 absolute ids of the image cells (MASK while masked); mask (b, n) bool; logits
    (b, n, K) float32 (only masked rows matter); keep_n (N,) cells left masked after each step; key one
    key or (b, 2) per-image keys (`row_keys`).
    Draws `noise.uniform` slot 0 (b, n, K) (not when temperature is 0) and slot 1 (b, n).
    Returns (tokens, mask, newly fixed map), all (b, n).
    """
    b, n, k = logits.shape
    t = sampling.temperature
    k_sample, k_mask = step_keys(row_keys(key, b), step)
    u_sample = None if t == 0 else noise.uniform(k_sample, step, (b, n, k), slot=0)
    sampled = gumbel_max_sample(logits, t, u_sample)
    probs = jnp.take_along_axis(jax.nn.softmax(logits, axis=-1), sampled[..., None], axis=-1)[..., 0]
    stay = mask_by_random_topk(keep_n[step], probs, t, noise.uniform(k_mask, step, (b, n), slot=1), mask)
    new = mask & ~stay
    return jnp.where(new, sampled + text_vocab_size, tokens), stay, new


def new_token_maps(batch: PromptBatch, new_cells: jax.Array, no_prompt: bool = False) -> tuple[jax.Array, jax.Array]:
    """The shortcut's new-token maps after a step: cond (b, Lc) = cells fixed at the step, plus the whole cond
    prompt unless no_prompt; uncond (b, Lu) = the same cells at their uncond columns (its prompt is never new).
    Special ids (BOA, BOI, NEWLINE, EOI, EOA) and padding are never new. new_cells: (b, n_img) bool."""
    b, lc = batch.cond_ids.shape
    rows = jnp.arange(b)[:, None]
    cond = jnp.zeros((b, lc), bool).at[rows, batch.cond_image_positions()].set(new_cells)
    if not no_prompt:
        cond = cond | (jnp.arange(lc)[None] < batch.prompt_len[:, None])
    uncond = jnp.zeros(batch.uncond_ids.shape, bool).at[rows, batch.uncond_image_positions()].set(new_cells)
    return cond, uncond


def shortcut_key_slots(batch: PromptBatch, keep_n: np.ndarray, no_prompt: bool) -> tuple[Optional[int], ...]:
    """Static bound on the new tokens (cross-attention keys) of a shortcut step, per side (cond, uncond):
    the most cells any step fixes, plus the padded cond prompt width unless no_prompt (`new_token_maps`).
    None where the bound reaches the sequence length (no compaction)."""
    fill = int(np.max(np.concatenate([[batch.n_img], keep_n[:-1]]) - keep_n))
    prompt = batch.cond_ids.shape[1] - region_length(batch.grid)
    bounds = [(fill if no_prompt else fill + prompt, batch.cond_ids.shape[1]), (fill, batch.uncond_ids.shape[1])]
    return tuple(None if k >= length else k for k, length in bounds)


def recompute_mask(logits: jax.Array, valid: jax.Array, compute_ratio: float) -> jax.Array:
    """ML-Cache: positions whose max codebook logit is <= its `compute_ratio` quantile over the sequence.

    logits (b, L, K) (every position, prompt and specials included), valid (b, L) -> (b, L) bool."""
    conf = jnp.max(logits, axis=-1).astype(jnp.float32)
    return (conf <= masked_quantile(conf, valid, compute_ratio)[:, None]) & valid


def cached_forward(model: LLaDA, ids: jax.Array, valid: jax.Array, compute: jax.Array, hidden: list,
                   logits: jax.Array, text_vocab_size: int, codebook_size: int,
                   n_query: Optional[int] = None) -> tuple[jax.Array, list]:
    """ML-Cache forward (`LLaDA.apply(..., method=cached_forward)`): the original's partial call.

    Only `compute` positions (b, L) are recomputed: their tokens are embedded and carried through the
    blocks as queries (at their true positions), attending to every valid key; keys/values come from
    the cached block INPUTS `hidden[l]` (b, L, d), which are overwritten at the computed positions.
    Caching the block input instead of pre-RoPE k/v is equivalent (k and v are a deterministic function
    of it) and takes half the memory. The codebook logits (b, L, K) of the computed positions replace
    those in `logits`; all other positions keep stale logits, as in the original.

    n_query: static number of query rows. None = every position is a query (shape-static; used for full
    steps, compute = valid); otherwise the first n_query positions in the order computed-first,
    ascending (non-computed rows among them neither write the cache nor the logits), so it is exact
    only when no row has more than n_query computed positions (see `ml_cache_step`).
    Returns (logits, hidden) updated.
    """
    t = model.transformer
    b, length = ids.shape
    rows = jnp.arange(b)[:, None]
    positions = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (b, length))
    idx = positions if n_query is None else jnp.argsort(~compute, axis=-1, stable=True)[:, :n_query].astype(jnp.int32)
    write = compute[rows, idx][..., None]  # (b, M, 1)
    lengths = jnp.sum(valid, axis=-1, dtype=jnp.int32)
    x = t.embed(ids[rows, idx])
    new_hidden = []
    for block, h in zip(t.blocks, hidden):
        h = h.at[rows, idx].set(jnp.where(write, x, h[rows, idx]))
        new_hidden.append(h)
        x = block(x, idx, kv=h, kv_positions=positions, key_lengths=lengths)
    fresh = t.image_logits(t.ln_f(x).astype(t.dtype), text_vocab_size, codebook_size)
    return logits.at[rows, idx].set(jnp.where(write, fresh, logits[rows, idx])), new_hidden


def ml_cache_queries(length: int, compute_ratio: float) -> Optional[int]:
    """Static query rows of a partial step for sequences of `length`: the count the quantile selects for
    distinct values (floor(q (L-1)) + 1) plus 25% + 8 for ties (bf16 logits tie often); None when that
    reaches L (compute everything)."""
    base = int(np.floor(np.float32(compute_ratio) * np.float32(length - 1))) + 1
    n = -(-5 * base // 4) + 8
    return None if n >= length else n


def ml_cache_step(model: LLaDA, params: dict, ids: jax.Array, valid: jax.Array, compute: jax.Array, hidden: list,
                  logits: jax.Array, text_vocab_size: int, codebook_size: int,
                  n_query: Optional[int]) -> tuple[jax.Array, list]:
    """`cached_forward` with n_query query rows when every row fits (the fast path), else with every
    position (exact fallback chosen on device with lax.cond). Shapes as in `cached_forward`."""
    def run(n):
        return lambda: model.apply(params, ids, valid, compute, hidden, logits, text_vocab_size, codebook_size, n,
                                   method=cached_forward)
    if n_query is None:
        return run(None)()
    return jax.lax.cond(jnp.max(jnp.sum(compute, axis=-1)) <= n_query, run(n_query), run(None))


def _gather(x: jax.Array, pos: jax.Array) -> jax.Array:
    """x (b, L, ...) at columns pos (b, n) -> (b, n, ...)."""
    return jnp.take_along_axis(x, pos.reshape(pos.shape + (1,) * (x.ndim - 2)), axis=1)


def sample_dimoo(models: DiMOOModels, sampling: DiMOOSampling, params: dict, batch: PromptBatch, key: jax.Array,
                 noise=JaxNoise(), capture: bool = False, decode: bool = True) -> dict:
    """Generates one image per row of `batch` (traceable; use `build_sampler` for the compiled version).

    params: {'llada': ..., 'shortcut': ... (shortcut mode), 'vq': ... (decode)}. key: one key (image i
    draws from fold_in(key, i)) or (b, 2) per-image keys; an image depends on its prompt and its own key
    only, not on the batch size or the other prompts. Returns {'codes': (b, gh, gw) int32 codebook
    indices, 'trace': {'tokens', 'mask'} (N, b, gh*gw) after every step (tokens are absolute ids, MASK while masked), plus with capture 'features': a tuple per
    side (cond[, uncond]) of (N, b, L, d) = the post-ln_f feature each step decides from (not in cache
    mode); 'images': (b, H, W, 3) uint8 if decode}.
    """
    sampling.validate(batch.n_img)
    lay, dtype = models.layout, jnp.dtype(models.dtype)
    llada = LLaDA(models.llada, dtype, models.attention_impl, matmul=models.matmul)
    widths = batch.cond_ids.shape[1], batch.uncond_ids.shape[1]
    if models.matmul == "fp8":  # else XLA pads the activations of every FP8 GEMM (fp8.GEMM_ROW_MULTIPLE)
        batch = batch.with_width_multiple(GEMM_ROW_MULTIPLE)
    lp = {"params": params["llada"]}
    b, n, steps = batch.cond_ids.shape[0], batch.n_img, sampling.steps
    tv, kb = lay.text_vocab_size, lay.codebook_size
    keep_n_np = dimoo_keep_n(steps, n)
    keep_n = jnp.asarray(keep_n_np, jnp.int32)
    ratios = jnp.asarray(dimoo_mask_ratios(steps, n))
    rows = jnp.arange(b)[:, None]
    cpos, upos = batch.cond_image_positions(), batch.uncond_image_positions()
    use_cfg = sampling.cfg_scale > 0
    q = 1 - sampling.cache_ratio  # ML-Cache: quantile of the recomputed positions
    sides = [(batch.cond_ids, batch.cond_valid, cpos)]
    if use_cfg:
        sides.append((batch.uncond_ids, batch.uncond_valid, upos))
    if sampling.mode == "shortcut":
        sp = {"params": cast_kernels(params["shortcut"], dtype)}
        key_slots = shortcut_key_slots(batch, keep_n_np, sampling.no_prompt)

    def sequences(tokens):
        """[(ids, valid, image columns)] per side (cond[, uncond]) with the current tokens written in."""
        return [(ids.at[rows, pos].set(tokens), valid, pos) for ids, valid, pos in sides]

    key_lengths = [jnp.sum(valid, axis=-1, dtype=jnp.int32) for _, valid, _ in sides]  # right padding, once

    def full(state, step):
        return tuple(llada.apply(lp, ids, None, None, lengths, method=LLaDA.features)
                     for (ids, _, _), lengths in zip(sequences(state["tokens"]), key_lengths))

    def shortcut(state, step):
        maps = new_token_maps(batch, state["new"], sampling.no_prompt)
        ratio = jnp.broadcast_to(ratios[step], (b,))
        return tuple(DiMOOShortcut(models.shortcut, dtype, models.attention_impl, slots).apply(
                         sp, feat, llada.apply(lp, ids, method=LLaDA.embed), new_map, ratio, valid)
                     for (ids, valid, _), feat, new_map, slots in zip(sequences(state["tokens"]), state["carry"], maps,
                                                                      key_slots))

    def reuse(state, step):
        return state["carry"]

    def cached(partial: bool):
        def branch(state, step):
            out = []
            for (ids, valid, _), (hidden, logits) in zip(sequences(state["tokens"]), state["carry"]):
                if partial:
                    compute, n_query = recompute_mask(logits, valid, q), ml_cache_queries(ids.shape[1], q)
                else:
                    compute, n_query = valid, None
                logits, hidden = ml_cache_step(llada, lp, ids, valid, compute, hidden, logits, tv, kb, n_query)
                out.append((hidden, logits))
            return tuple(out)
        return branch

    def image_logits(carry):
        """CFG-combined codebook logits at the image cells, (b, n, K) float32."""
        if sampling.mode == "cache":
            per_side = [_gather(logits, pos) for (_, logits), (_, _, pos) in zip(carry, sides)]
        else:
            per_side = [llada.apply(lp, _gather(feat, pos), tv, kb, method=LLaDA.image_logits)
                        for feat, (_, _, pos) in zip(carry, sides)]
        if not use_cfg:
            return per_side[0].astype(jnp.float32)
        s = sampling.cfg_scale
        return ((1 + s) * per_side[0] - s * per_side[1]).astype(jnp.float32)

    def update(state, carry, step):
        tokens, mask, new = dimoo_step(sampling, keep_n, state["tokens"], state["mask"], image_logits(carry),
                                       step, state["key"], noise, tv)
        out = {"tokens": tokens, "mask": mask}
        if capture:
            out["features"] = tuple(feat[:, :w] for feat, w in zip(carry, widths))  # without the FP8 padding
        return dict(state, tokens=tokens, mask=mask, new=new, carry=carry), out

    d = models.llada.d_model
    if sampling.mode == "cache":
        carry = tuple(([jnp.zeros(ids.shape + (d,), dtype)] * models.llada.n_layers, jnp.zeros(ids.shape + (kb,), dtype))
                      for ids, _, _ in sides)
        branches = (cached(False), cached(True))
    else:
        carry = tuple(jnp.zeros(ids.shape + (d,), dtype) for ids, _, _ in sides)
        branches = (full, shortcut if sampling.mode == "shortcut" else reuse)
    state = {
        "tokens": jnp.full((b, n), lay.mask, jnp.int32),
        "mask": jnp.ones((b, n), bool),
        "new": jnp.zeros((b, n), bool),
        "carry": carry,
        "key": row_keys(key, b),
    }
    state, trace = hybrid_loop(state, sampling.kinds(), branches, update)
    codes = (state["tokens"] - tv).reshape(b, *batch.grid)
    result = {"codes": codes, "trace": trace}
    if decode:
        from migm_jax.models.vqmodel import VQModel
        from migm_jax.sampling.dimoo_image import codes_to_uint8

        vq = VQModel(models.vq, jnp.dtype(models.vq_dtype))
        result["images"] = codes_to_uint8(vq.apply({"params": params["vq"]}, codes, method=VQModel.decode_code))
    return result


@functools.lru_cache(maxsize=None)
def build_sampler(models: DiMOOModels, sampling: DiMOOSampling, decode: bool = True,
                  mesh: Optional[jax.sharding.Mesh] = None, capture: bool = False):
    """One jitted sampler per configuration: fn(params, batch: PromptBatch, key[, noise]) -> dict.

    One compilation per prompt-batch shape (batch size, padded lengths, grid). With a `mesh`, the batch
    and the outputs are split over its ('data', 'fsdp') axes and the params keep the sharding they were
    placed with (`migm_jax.sharding.shard_params` or `convert.llada(shardings=...)`); the sharded sampler
    draws its own noise (fn(params, batch, key)). capture: also return the per-step features (`sample_dimoo`).
    """
    sampling.validate()
    models.validate(sampling, decode)
    if capture and sampling.mode == "cache":
        raise ValueError("feature capture needs a feature mode (vanilla, shortcut, reuse), not cache")
    fn = functools.partial(sample_dimoo, models, sampling, capture=capture, decode=decode)
    if mesh is None:
        return jax.jit(fn, compiler_options=cublas_gemm_options())
    from migm_jax.sharding import batch_sharding, replicated

    fn = functools.partial(fn, noise=JaxNoise())
    return jax.jit(fn, in_shardings=(None, batch_sharding(mesh), replicated(mesh)), compiler_options=cublas_gemm_options())
