"""MaskGIT policy for the hybrid loop: CFG ramp, categorical sampling, randomised confidence, top-k.

`build_sampler` returns one compiled program per configuration (vanilla / shortcut / reuse, any N
and budget). All decisions of a step come from the noise source, so recorded draws replay the
original sampler exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from migm_jax.models.layers import cast_kernels
from migm_jax.models.maskgit import MaskTransformer, MaskTransformerConfig, without_kv_biases
from migm_jax.models.shortcut import MaskGITShortcut, MaskGITShortcutConfig
from migm_jax.models.vqgan import VQGAN, VQGANConfig
from migm_jax.sampling.loop import hybrid_loop
from migm_jax.sampling.noise import JaxNoise, row_keys, step_keys
from migm_jax.sampling.schedules import MASKGIT_SCHEDULES, maskgit_schedule, step_kinds
from migm_jax.sampling.selection import select_top_k

RANDOMIZE_MODES = ("linear", "warm_up", "random", "none")


@dataclasses.dataclass(frozen=True)
class MaskGITSampling:
    """Sampler settings; the defaults are the original's infer.py (N=15, arccos, w=2.8, r_temp=7)."""

    steps: int = 15
    mode: str = "vanilla"  # vanilla | shortcut | reuse
    budget: Optional[int] = None  # full steps in shortcut / reuse mode
    cfg_w: float = 2.8
    r_temp: float = 7.0
    sm_temp: float = 1.0
    sched_mode: str = "arccos"
    randomize: str = "linear"

    def validate(self, grid: Optional[int] = None) -> None:
        """Raises ValueError with a one-line explanation for an impossible configuration; with the
        model's token `grid`, also when the steps cannot fill grid x grid tokens."""
        if self.steps < 2:
            raise ValueError(f"steps must be >= 2, got {self.steps}")
        for name in ("cfg_w", "r_temp", "sm_temp"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}")
        if self.cfg_w < 0 or self.r_temp < 0:
            raise ValueError(f"cfg_w and r_temp must be >= 0 (0: no guidance / no randomisation), got {self.cfg_w}, {self.r_temp}")
        if self.sm_temp <= 0:
            raise ValueError(f"sm_temp must be > 0 (it multiplies the logits; 0 samples uniformly), got {self.sm_temp}")
        if self.randomize not in RANDOMIZE_MODES:
            raise ValueError(f"randomize must be one of {', '.join(RANDOMIZE_MODES)}, got {self.randomize!r}")
        step_kinds(self.mode, self.steps, self.budget)  # also checks the budget
        if self.sched_mode not in MASKGIT_SCHEDULES:
            raise ValueError(f"unknown schedule {self.sched_mode!r}; choose one of {', '.join(MASKGIT_SCHEDULES)}")
        if grid is not None:
            maskgit_schedule(self.steps, self.sched_mode, grid)


def trajectory_sampling(settings: dict) -> MaskGITSampling:
    """The vanilla sampler of a training config's `sampling` dict; a 'budget' in it is the recommended
    budget of shortcut sampling (what sample.py uses by default), not part of the trajectories."""
    return MaskGITSampling(**{**{k: v for k, v in settings.items() if k != "budget"}, "mode": "vanilla"})


def confidence(prob_of_pred: jax.Array, randomize: str, r_temp: float, ratio: jax.Array, step: jax.Array,
               draw_gumbel: Callable[[], jax.Array], draw_uniform: Callable[[], jax.Array]) -> jax.Array:
    """The score that ranks positions: (b, n) probability of the sampled code -> (b, n) float32.

    linear: log p + r_temp * gumbel * (1 - ratio); warm_up: uniform for the first two steps, p after;
    random: uniform; none: p.
    """
    if randomize == "linear":
        return jnp.log(prob_of_pred) + r_temp * draw_gumbel() * (1.0 - ratio)
    if randomize == "warm_up":
        return jnp.where(step < 2, draw_uniform(), prob_of_pred)
    if randomize == "random":
        return draw_uniform()
    return prob_of_pred


def maskgit_step(sampling: MaskGITSampling, sche: jax.Array, code: jax.Array, mask: jax.Array,
                 logits2: jax.Array, step: jax.Array, key: jax.Array, noise) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One MaskGIT decision given the CFG-doubled logits.

    code (b, n) int32, mask (b, n) bool, logits2 (2b, n, K) float32 = [cond; uncond], step scalar, key
    one key or (b, 2) per-image keys (`row_keys`),
    sche (N,) tokens per step. The CFG weight ramps as w * step / (N - 1); softmax of sm_temp * logits;
    codes sampled by `noise.categorical`; confidence randomised per `sampling.randomize`; the sche[step]
    most confident masked positions are fixed. Returns (code, mask, newly fixed map).
    """
    b, n = code.shape
    ratio = step.astype(jnp.float32) / (sampling.steps - 1)
    w = sampling.cfg_w * ratio
    logits = ((1 + w) * logits2[:b] - w * logits2[b:]) * sampling.sm_temp
    prob = jax.nn.softmax(logits, axis=-1)
    k_cat, k_conf = step_keys(row_keys(key, b), step)
    pred = noise.categorical(k_cat, step, logits)
    p_pred = jnp.take_along_axis(prob, pred[..., None], axis=-1)[..., 0]
    conf = confidence(p_pred, sampling.randomize, sampling.r_temp, ratio, step,
                      lambda: noise.gumbel(k_conf, step, (b, n)), lambda: noise.uniform(k_conf, step, (b, n)))
    conf = jnp.where(mask, conf, -jnp.inf)
    return select_top_k(code, mask, pred, conf, sche[step])


@dataclasses.dataclass(frozen=True)
class MaskGITModels:
    """The modules of one MaskGIT-Shortcut pipeline (shortcut / vqgan may be None)."""

    transformer: MaskTransformerConfig
    shortcut: Optional[MaskGITShortcutConfig] = None
    vqgan: Optional[VQGANConfig] = None
    dtype: str = "float32"  # compute dtype of transformer and shortcut: float32 | bfloat16
    attention_impl: Optional[str] = None  # None (exact XLA) | 'cudnn' | 'xla'
    approximate_gelu: bool = False  # tanh GELU: faster on GPU, for bf16 compute
    class_token_apart: bool = False  # transformer attention at T = grid^2 + the class token merged (same function)
    vqgan_dtype: str = "float32"

    def validate(self, sampling: MaskGITSampling, decode: bool) -> None:
        """Raises ValueError (one line) when the parts cannot serve `sampling` (or decode images)."""
        sampling.validate(self.transformer.grid)
        if self.class_token_apart and self.attention_impl is None:
            raise ValueError("class_token_apart needs attention_impl 'cudnn' or 'xla' (it uses their log-sum-exp)")
        if sampling.mode == "shortcut":
            if self.shortcut is None:
                raise ValueError("mode shortcut needs a shortcut model (MaskGITModels.shortcut is None)")
            if self.shortcut.hidden != self.transformer.hidden:
                raise ValueError(f"shortcut hidden {self.shortcut.hidden} != transformer hidden {self.transformer.hidden}")
        if decode:
            if self.vqgan is None:
                raise ValueError("decoding images needs a VQGAN (MaskGITModels.vqgan is None); decode=False gives codes")
            if self.vqgan.n_embed != self.transformer.codebook_size:
                raise ValueError(f"VQGAN n_embed {self.vqgan.n_embed} != transformer codebook {self.transformer.codebook_size}")


def sample_maskgit(models: MaskGITModels, sampling: MaskGITSampling, params: dict, labels: jax.Array,
                   key: jax.Array, noise=JaxNoise(), capture: bool = False, decode: bool = True) -> dict:
    """Generates len(labels) images (traceable; use `build_sampler` for the compiled version).

    params: {'transformer': ..., 'shortcut': ... (shortcut mode), 'vqgan': ... (decode)}.
    labels: (b,) int32 class ids. key: one key (image i draws from fold_in(key, i)) or (b, 2) per-image
    keys; either way an image depends on its own key only, not on the rest of the batch.
    Returns {'codes': (b,g,g) int32, 'images': (b,H,W,3) float32 if decode, 'trace': {'codes', 'mask'} (N, b, g*g) after every step, plus 'features' (N, 2b, T, C)
    float32 = the feature each step decides from (both CFG halves) if capture}.
    """
    tcfg, dtype = models.transformer, jnp.dtype(models.dtype)
    check_label_array(labels, tcfg.nclass)
    transformer = MaskTransformer(tcfg, dtype, models.attention_impl, models.approximate_gelu, kv_bias=False,
                                  class_token_apart=models.class_token_apart)
    tp = {"params": cast_kernels(without_kv_biases(params["transformer"]), dtype)}
    b, n, steps = labels.shape[0], tcfg.grid * tcfg.grid, sampling.steps
    sche = jnp.asarray(maskgit_schedule(steps, sampling.sched_mode, tcfg.grid), jnp.int32)
    labels2 = jnp.concatenate([labels, labels]).astype(jnp.int32)
    drop2 = jnp.concatenate([jnp.zeros((b,), bool), jnp.ones((b,), bool)])
    doubled = lambda code: jnp.concatenate([code, code]).reshape(2 * b, tcfg.grid, tcfg.grid)

    sp = cast_kernels(params["shortcut"], dtype) if sampling.mode == "shortcut" else None
    max_new = int(maskgit_schedule(steps, sampling.sched_mode, tcfg.grid).max())  # most tokens one step fixes

    def full(state, step):
        return transformer.apply(tp, doubled(state["code"]), labels2, drop2, method=MaskTransformer.features)

    def shortcut(state, step):
        ids = transformer.apply(tp, doubled(state["code"]), labels2, drop2, method=MaskTransformer.input_ids)
        emb = transformer.apply(tp, ids, method=MaskTransformer.embed)
        new_map = jnp.concatenate([state["new_map"], jnp.zeros((b, 1), bool)], axis=1)
        ratio = jnp.mean(state["mask"].astype(jnp.float32), axis=1)
        sc = MaskGITShortcut(models.shortcut, dtype, models.attention_impl, models.approximate_gelu, max_new)
        return sc.apply({"params": sp}, state["feat"], emb,
                        jnp.concatenate([new_map, new_map]), jnp.concatenate([ratio, ratio]))

    def reuse(state, step):
        return state["feat"]

    def update(state, feat, step):
        logits = transformer.apply(tp, feat, method=MaskTransformer.head)
        code, mask, new_map = maskgit_step(sampling, sche, state["code"], state["mask"], logits, step,
                                           state["key"], noise)
        out = {"codes": code, "mask": mask}
        if capture:
            out["features"] = feat
        return dict(state, code=code, mask=mask, new_map=new_map, feat=feat), out

    state = {
        "code": jnp.full((b, n), tcfg.mask_id, jnp.int32),
        "mask": jnp.ones((b, n), bool),
        "new_map": jnp.zeros((b, n), bool),
        "feat": jnp.zeros((2 * b, tcfg.seq_len, tcfg.hidden), jnp.float32),
        "key": row_keys(key, b),
    }
    cheap = {"vanilla": reuse, "reuse": reuse, "shortcut": shortcut}[sampling.mode]
    state, trace = hybrid_loop(state, step_kinds(sampling.mode, steps, sampling.budget), (full, cheap), update)
    codes = state["code"].reshape(b, tcfg.grid, tcfg.grid)
    result = {"codes": codes, "trace": trace}
    if decode:
        vq = VQGAN(models.vqgan, jnp.dtype(models.vqgan_dtype))
        result["images"] = vq.apply({"params": params["vqgan"]}, codes, method=VQGAN.decode_code)
    return result


@functools.lru_cache(maxsize=None)
def build_sampler(models: MaskGITModels, sampling: MaskGITSampling, capture: bool = False, decode: bool = True,
                  mesh: Optional[jax.sharding.Mesh] = None):
    """One jitted sampler per configuration: fn(params, labels, key[, noise]) -> dict.

    With a `mesh`, labels and outputs are sharded over its 'data' axis, params replicated; the
    sharded sampler draws its own noise (fn(params, labels, key)).
    The settings and models are checked here (ValueError); each call (and `fn.lower`) first checks its
    labels on the host (`check_label_array`).
    """
    models.validate(sampling, decode)
    fn = functools.partial(sample_maskgit, models, sampling, capture=capture, decode=decode)
    if mesh is None:
        return LabelChecked(jax.jit(fn), models.transformer.nclass)
    fn = functools.partial(fn, noise=JaxNoise())
    from migm_jax.sharding import batch_sharding, replicated

    rep, data = replicated(mesh), batch_sharding(mesh)
    return LabelChecked(jax.jit(fn, in_shardings=(rep, data, rep)), models.transformer.nclass)


class LabelChecked:
    """A jitted sampler fn(params, labels, ...) whose calls and `lower` first check the labels on the
    host (`check_label_array`); every other attribute is the jitted function's."""

    def __init__(self, fn, nclass: int):
        self.fn, self.nclass = fn, nclass

    def __call__(self, params, labels, *args, **kwargs):
        check_label_array(labels, self.nclass)
        return self.fn(params, labels, *args, **kwargs)

    def lower(self, params, labels, *args, **kwargs):
        check_label_array(labels, self.nclass)
        return self.fn.lower(params, labels, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.fn, name)


def check_label_array(labels, nclass: int) -> None:
    """ValueError (one line) unless `labels` is a 1-D array of integer class ids in [0, nclass). Traced
    or abstract labels (inside jit, a ShapeDtypeStruct) are checked for their dtype and shape only."""
    dtype, shape = getattr(labels, "dtype", None), getattr(labels, "shape", None)
    if dtype is None:
        labels = np.asarray(labels)
        dtype, shape = labels.dtype, labels.shape
    if not jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(f"labels must be integer class ids, got dtype {np.dtype(dtype).name}")
    if len(shape) != 1:
        raise ValueError(f"labels must be a 1-D array of class ids, got shape {tuple(shape)}")
    if isinstance(labels, (jax.core.Tracer, jax.ShapeDtypeStruct)):
        return
    if isinstance(labels, jax.Array) and not labels.is_fully_addressable:
        return  # a global array of several processes: each checks the labels it was given
    check_labels(np.asarray(labels), nclass)


def check_labels(labels: np.ndarray, nclass: int) -> None:
    """Raises ValueError naming the first label outside [0, nclass)."""
    labels = np.asarray(labels)
    bad = labels[(labels < 0) | (labels >= nclass)]
    if bad.size:
        raise ValueError(f"label {int(bad[0])} is outside [0, {nclass}); these weights' class ids are 0..{nclass - 1}")
