"""MaskGIT-Shortcut glue for the CLIs: conversion of the released checkpoints, sampling to PNG."""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from migm_jax.apps import rows
from migm_jax.convert.maskgit import check_heads, maskgit_shortcut, maskgit_transformer
from migm_jax.convert.state_dict import CheckpointError
from migm_jax.convert.taming import check_vqgan_files, taming_vqgan
from migm_jax.convert.torch_file import check_checkpoint_file
from migm_jax.files import check_output_dir
from migm_jax.images import check_finite, minmax_uint8
from migm_jax.models.maskgit import MaskTransformer, MaskTransformerConfig
from migm_jax.models.shortcut import MaskGITShortcut, MaskGITShortcutConfig
from migm_jax.models.vqgan import VQGAN, VQGANConfig
from migm_jax.sampling.maskgit import MaskGITModels, MaskGITSampling, build_sampler, check_labels
from migm_jax.sharding import make_mesh
from migm_jax.weights import as_float32, load_weights, read_config, save_weights

FAMILY = "maskgit"


def convert(vit: str, vqgan_dir: str, shortcut: str | None, out: str, heads: int = 16, shortcut_heads: int = 16) -> None:
    """Converts MaskGIT_ImageNet_512.pth + VQGAN (last.ckpt, model.yaml) [+ maskgit-shortcut.pth] into `out`.
    The arguments (head counts, the files, a writable `out`) are checked before any checkpoint is read."""
    check_heads(heads, "--heads")
    check_heads(shortcut_heads, "--shortcut-heads")
    check_output_dir(out)
    vq_files = os.path.join(vqgan_dir, "last.ckpt"), os.path.join(vqgan_dir, "model.yaml")
    for path in (vit, shortcut) if shortcut else (vit,):
        check_checkpoint_file(path)
    check_vqgan_files(*vq_files)
    parts = [("transformer", lambda: maskgit_transformer(vit, heads)), ("vqgan", lambda: taming_vqgan(*vq_files))]
    if shortcut:
        parts.append(("shortcut", lambda: maskgit_shortcut(shortcut, shortcut_heads)))
    configs, params = {}, {}
    for name, load in tqdm(parts, desc="converting", unit="part"):
        cfg, params[name] = load()
        configs[name] = cfg.to_dict()
    check_compatible(MaskTransformerConfig.from_dict(configs["transformer"]), VQGANConfig.from_dict(configs["vqgan"]),
                     MaskGITShortcutConfig.from_dict(configs["shortcut"]) if shortcut else None)
    save_weights(out, FAMILY, configs, params)
    print(f"wrote {out} ({', '.join(configs)})")


def check_compatible(t: MaskTransformerConfig, v: VQGANConfig, s: MaskGITShortcutConfig | None) -> None:
    """Raises CheckpointError when the three parts cannot work together."""
    problems = []
    if t.codebook_size != v.n_embed:
        problems.append(f"transformer codebook {t.codebook_size} != VQGAN n_embed {v.n_embed}")
    if s is not None and s.hidden != t.hidden:
        problems.append(f"shortcut hidden {s.hidden} != transformer hidden {t.hidden}")
    if problems:
        raise CheckpointError("checkpoints do not fit together: " + "; ".join(problems))


def demo_pipeline(seed: int = 0) -> tuple[MaskGITModels, dict]:
    """A small randomly initialised transformer + shortcut + VQGAN (16x16 tokens, 64x64 images)."""
    t = MaskTransformerConfig(hidden=64, depth=2, heads=4, mlp_dim=128, codebook_size=64, grid=16)
    s = MaskGITShortcutConfig(hidden=64, heads=4)
    v = VQGANConfig(embed_dim=8, n_embed=64, z_channels=16, ch=32, ch_mult=(1, 1, 2), num_res_blocks=1,
                    attn_resolutions=(16,), resolution=64, in_channels=3, out_ch=3)
    return MaskGITModels(t, s, v), random_pipeline_params(t, s, v, seed)


def random_pipeline_params(t: MaskTransformerConfig, s: MaskGITShortcutConfig, v: VQGANConfig, seed: int) -> dict:
    """`random_params` of a transformer, its shortcut and a VQGAN decoder (the sampler's three param trees;
    decode only, no encoder), seeds seed, seed + 1, seed + 2. Host numpy arrays."""
    key = jax.random.PRNGKey(0)  # only traced for shapes
    codes, labels = jnp.zeros((1, t.grid, t.grid), jnp.int32), jnp.zeros((1,), jnp.int32)
    feat = jnp.zeros((1, t.seq_len, t.hidden))
    return {
        "transformer": random_params(lambda: MaskTransformer(t).init(key, codes, labels, labels > 0), seed),
        "shortcut": random_params(lambda: MaskGITShortcut(s).init(key, feat, feat, jnp.ones((1, t.seq_len), bool),
                                                                   jnp.ones((1,))), seed + 1),
        "vqgan": random_params(lambda: VQGAN(v).init(key, codes, method=VQGAN.decode_code), seed + 2),
    }


def add_sample_args(parser: argparse.ArgumentParser, shown: Optional[dict] = None) -> argparse._ArgumentGroup:
    """Adds this family's sampling options to `parser`; returns their group. Unset options take
    `defaults(configs)`: the weights' recommended settings, else the original infer.py's. shown: those
    defaults for the weights at hand (their values appear in --help), None when not known."""
    note = lambda dest, otherwise: rows.default_note(shown, dest, otherwise)
    g = parser.add_argument_group("MaskGIT")
    g.add_argument("--labels", type=int, nargs="+",
                   help="class ids, one image each (default: every class of a model of <= 10 classes, "
                        "else the original infer.py batch 1 7 282 604 724 179 681 367 850 137)")
    g.add_argument("--r-temp", type=float, help=f"gumbel scale of the confidence randomisation ({note('r_temp', 7)})")
    g.add_argument("--sm-temp", type=float, help=f"softmax temperature (multiplies the logits; {note('sm_temp', 1)})")
    g.add_argument("--schedule", help=f"root | linear | square | cosine | arccos ({note('schedule', 'arccos')})")
    g.add_argument("--randomize", help=f"linear | warm_up | random | none ({note('randomize', 'linear')})")
    g.add_argument("--fast-gelu", action="store_true",
                   help="tanh GELU instead of erf (meant for bf16)")
    return g


def random_params(init, seed: int) -> dict:
    """Random params with the shapes `init()` would create, without compiling the model (fast on CPU, and
    on a GPU, where compiling a jitted Flax init of a real-size model took minutes): norm scales and
    batch-norm variances 1, biases and batch-norm means 0, other weights N(0, 1/fan_in) from numpy's
    generator."""
    shapes = jax.eval_shape(init)["params"]
    paths, treedef = jax.tree_util.tree_flatten_with_path(shapes)
    rng, leaves = np.random.default_rng(seed), []
    for path, leaf in paths:
        name = getattr(path[-1], "key", "")
        if name in ("scale", "bias", "var", "mean"):
            leaves.append(np.full(leaf.shape, 1.0 if name in ("scale", "var") else 0.0, np.float32))
        else:
            fan_in = int(np.prod(leaf.shape[:-1])) if name == "kernel" else leaf.shape[-1]
            leaves.append((rng.standard_normal(leaf.shape) / np.sqrt(fan_in)).astype(np.float32))
    return jax.tree_util.tree_unflatten(treedef, leaves)


IMAGENET_LABELS = (1, 7, 282, 604, 724, 179, 681, 367, 850, 137)
ORIGINAL = {"steps": 15, "cfg_w": 2.8, "r_temp": 7.0, "sm_temp": 1.0, "sched_mode": "arccos", "randomize": "linear"}
OPTIONS = {"steps": "steps", "cfg": "cfg_w", "r_temp": "r_temp", "sm_temp": "sm_temp", "schedule": "sched_mode",
           "randomize": "randomize"}  # sample.py option (dest) -> MaskGITSampling field


def defaults(configs: dict) -> dict:
    """What each omitted sampling option of sample.py (by dest) becomes for weights with `configs`: the
    weights' recommended settings (config.json 'sampling', written by training export), else the
    original's (N=15, w=2.8, r_temp 7, arccos, linear); 'budget': the recommended budget or None."""
    recommended = configs.get("sampling", {})
    return {**{dest: recommended.get(field, ORIGINAL[field]) for dest, field in OPTIONS.items()},
            "budget": recommended.get("budget")}


def sampling_from_args(args: argparse.Namespace, mode: str, configs: dict) -> MaskGITSampling:
    """Validated sampler settings for `mode`: the options given, else `defaults(configs)`."""
    return sampling_for(mode, vars(args), configs)


def sampling_for(mode: str, given: dict, configs: dict) -> MaskGITSampling:
    """Validated sampler settings for `mode` from `given` (sample.py's option dests -> values; an absent or
    None value takes `defaults(configs)`)."""
    used = defaults(configs)
    settings = {field: used[dest] if given.get(dest) is None else given[dest] for dest, field in OPTIONS.items()}
    budget = rows.chosen_budget(mode, given.get("budget"), used["budget"], settings["steps"])
    sampling = MaskGITSampling(mode=mode, budget=budget, **settings)
    sampling.validate()
    return sampling


def require_transformer(weights: str, configs: dict) -> None:
    if "transformer" not in configs:
        raise ValueError(f"{weights}/config.json lists no 'transformer'; is this a MaskGIT weights directory?")


def models_of(weights: str, sampling: MaskGITSampling, labels) -> MaskGITModels:
    """The models of the weights dir `weights` from its config.json alone, checked against `sampling`
    and `labels` (ValueError, one line), so that no param is read for settings that cannot run."""
    _, configs = read_config(weights)
    require_transformer(weights, configs)
    tcfg = MaskTransformerConfig.from_dict(configs["transformer"])
    check_labels(np.asarray(labels), tcfg.nclass)
    if sampling.mode == "shortcut" and "shortcut" not in configs:
        raise ValueError(f"{weights} holds no shortcut; convert with --shortcut or use --mode vanilla/reuse")
    if "vqgan" not in configs:
        raise ValueError(f"{weights} holds no image decoder (no 'vqgan'): it was exported from a random teacher "
                         "without one; train from teacher_weights = a convert_weights.py directory (its VQGAN goes "
                         "into the export), or give a random teacher one (teacher.vqgan) before training")
    models = models_from_configs(configs)
    models.validate(sampling, decode=True)
    return models


def models_from_configs(configs: dict) -> MaskGITModels:
    """The modules of a MaskGIT weights dir's configs (shortcut only when present)."""
    return MaskGITModels(MaskTransformerConfig.from_dict(configs["transformer"]),
                         MaskGITShortcutConfig.from_dict(configs["shortcut"]) if "shortcut" in configs else None,
                         VQGANConfig.from_dict(configs["vqgan"]))


def load_pipeline(weights_dir: str) -> tuple[MaskGITModels, dict, dict]:
    """(models, float32 params, configs) of a MaskGIT weights dir (params may be stored in bfloat16)."""
    _, configs, params = load_weights(weights_dir)
    return models_from_configs(configs), as_float32(params), configs


def generate(models: MaskGITModels, params: dict, sampling: MaskGITSampling, labels: np.ndarray, seed: int,
             batch_size: Optional[int]) -> tuple[np.ndarray, float, list[float]]:
    """Samples `labels` in batches (image i from fold_in(PRNGKey(seed), i)) -> (images (b,H,W,3) float32,
    compile seconds, seconds per batch)."""
    n_dev = jax.device_count()
    bs = -(-(batch_size or len(labels)) // n_dev) * n_dev  # whole rows per device
    fn = build_sampler(models, sampling, mesh=make_mesh() if n_dev > 1 else None)  # batch over the data axis
    labels = np.asarray(labels)
    return rows.generate(fn, params, lambda idx: jnp.asarray(labels[idx]), len(labels), bs, seed,
                         rows.describe(sampling))


def run_sample(args: argparse.Namespace) -> None:
    """Samples the requested labels with each requested mode (default: vanilla, and the shortcut when
    the weights hold one and a budget is known: --budget or the weights' recommended one), prints compile
    and sampling times, writes one PNG (a labelled row per mode when there are several).
    args.weights None: a small random model (`demo_pipeline`)."""
    random_model = args.weights is None
    if random_model:
        print("DEMO: randomly initialised small model (no trained weights) - the images are noise-like by design")
        models, params = demo_pipeline(args.seed)
        configs = {}
    else:
        _, configs = read_config(args.weights)
        require_transformer(args.weights, configs)
    nclass = models.transformer.nclass if random_model else MaskTransformerConfig.from_dict(configs["transformer"]).nclass
    labels = args.labels or (list(range(nclass)) if nclass <= 10 else list(IMAGENET_LABELS))
    check_labels(np.asarray(labels), nclass)
    budget_known = args.budget is not None or defaults(configs)["budget"] is not None
    with_shortcut = (random_model or "shortcut" in configs) and budget_known  # the default comparison needs a budget
    modes = [args.mode] if args.mode else ["vanilla"] + (["shortcut"] if with_shortcut else [])
    samplings = [sampling_from_args(args, mode, configs) for mode in modes]
    if not random_model:
        for sampling in samplings:
            models_of(args.weights, sampling, labels)  # every check before the params are read
        models, params, _ = load_pipeline(args.weights)
    models = dataclasses.replace(models, dtype=args.dtype, attention_impl=args.attention, approximate_gelu=args.fast_gelu)
    labels = np.asarray(labels, np.int32)
    images_rows, names = [], []
    for sampling in samplings:
        images, compile_s, times = generate(models, params, sampling, labels, args.seed, args.batch_size)
        print(rows.timing_line(sampling, len(labels), compile_s, times))
        images_rows.append(minmax_uint8(check_finite(images)))
        names.append(f"{rows.describe(sampling)}  {np.sum(times):.2f} s")
    classes = configs.get("classes", {}).get("names")
    columns = [classes[i] if classes else str(i) for i in labels]
    written = rows.save_rows(images_rows, names, columns, args.out, args.save_each)
    print(f"wrote {written[0]}" + (f" and {len(written) - 1} images" if len(written) > 1 else ""))
