"""Lumina-DiMOO-Shortcut glue for the CLIs: conversion of the released checkpoints, text-to-image sampling to PNG."""

from __future__ import annotations

import argparse
import os
import shutil
import time
from typing import Optional

import jax
import numpy as np
from tqdm import tqdm

from migm_jax.convert.diffusers import diffusers_vq
from migm_jax.convert.dimoo import dimoo_shortcut, dimoo_token_layout, llada, llada_config, tokenizer_files
from migm_jax.files import check_output_dir, read_text_lines
from migm_jax.images import save_images
from migm_jax.models.dimoo_shortcut import DiMOOShortcutConfig
from migm_jax.models.llada import LLaDAConfig
from migm_jax.models.vqmodel import VQModelConfig
from migm_jax.sampling.dimoo import DiMOOModels, DiMOOSampling, build_sampler
from migm_jax.sampling.dimoo_prompts import TokenLayout, build_sequences, check_size, load_tokenizer
from migm_jax.sampling.noise import image_keys
from migm_jax.weights import TOKENIZER_DIR, load_weights, read_config, save_weights, stored_target

FAMILY = "dimoo"


def convert(model_dir: str, shortcut_path: Optional[str], out_dir: str, layout: Optional[TokenLayout] = None,
            trust_remote_code: bool = False) -> None:
    """Converts a Lumina-DiMOO HF folder (LLaDA safetensors + config.json, tokenizer files, vqvae/) and
    optionally dimoo-shortcut.pth into the weights directory `out_dir` (LLaDA keeps its dtype, bf16).
    `layout`: the token layout; None reads it from the folder (`dimoo_token_layout`: its tokenizer's special
    tokens, config.json and the VQ codebook; the released folder gives `TokenLayout.real()`).
    `out_dir` is checked to be writable before any checkpoint is read."""
    check_output_dir(out_dir)
    tok_files = tokenizer_files(model_dir)
    if os.path.isdir(model_dir) and not tok_files:
        raise FileNotFoundError(f"no tokenizer files (tokenizer.json, tokenizer_config.json, ...) in {model_dir}")
    configs, params = {}, {}
    cfg = llada_config(model_dir)  # the small parts first: a bad one is reported before 16 GB are read
    vcfg, params["vq"] = diffusers_vq(model_dir)
    if layout is None:
        layout = dimoo_token_layout(model_dir, vcfg.num_vq_embeddings, trust_remote_code=trust_remote_code)
    DiMOOModels(cfg, layout, vq=vcfg).validate(DiMOOSampling(), decode=True)
    if shortcut_path:
        scfg, params["shortcut"] = dimoo_shortcut(shortcut_path, cfg)
        configs["shortcut"] = scfg.to_dict()
    host = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])  # 16 GB of bf16: keep it off the accelerator
    cfg, params["llada"] = llada(model_dir, shardings=lambda path: host)
    configs.update(llada=cfg.to_dict(), vq=vcfg.to_dict(), layout=layout.to_dict())
    save_weights(out_dir, FAMILY, configs, params)
    tok_out = os.path.join(out_dir, TOKENIZER_DIR)
    os.makedirs(tok_out, exist_ok=True)
    for f in tok_files:
        shutil.copy2(f, tok_out)
    print(f"wrote {out_dir} ({', '.join(configs)}, {len(tok_files)} tokenizer files)")


def add_sample_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Adds this family's sampling options to `parser`; returns their group."""
    g = parser.add_argument_group("Lumina-DiMOO")
    g.add_argument("--prompt", nargs="+", action="extend",
                   help="text prompts, one image each (used verbatim); repeat --prompt or list several")
    g.add_argument("--prompt-file", "--prompts-file", dest="prompt_file",
                   help="text file with one prompt per line (lines are stripped, blanks skipped)")
    g.add_argument("--trust-remote-code", action="store_true",
                   help="let the tokenizer run the Python code shipped in its folder (as the original loads it)")
    g.add_argument("--height", type=int, default=1024, help="image height in pixels (multiple of the VQ factor, 16)")
    g.add_argument("--width", type=int, default=1024, help="image width in pixels (multiple of 16)")
    g.add_argument("--temperature", type=float, default=1.0, help="Gumbel temperature of sampling and re-masking")
    g.add_argument("--cache-ratio", type=float, default=0.9, help="ML-Cache: fraction of positions served from cache")
    g.add_argument("--refresh-interval", type=int, default=5, help="ML-Cache: full step every k steps after warm-up")
    g.add_argument("--warmup-ratio", type=float, default=0.3, help="ML-Cache: leading fraction of full steps")
    g.add_argument("--matmul", default="bf16", choices=["bf16", "fp8"],
                   help="LLaDA's block projections: in the compute dtype, or fp8 = float8 e4m3 with current scaling on "
                        "weights quantised once after loading (opt-in; for Hopper GPUs)")
    g.add_argument("--force-fp8", action="store_true",
                   help="run --matmul fp8 where it is only emulated (no FP8 tensor cores, e.g. CPU): slow, for checks")
    g.add_argument("--fsdp", type=int, default=1, help="devices that split the params (FSDP); the rest split the batch")
    g.add_argument("--tensor", type=int, default=1, help="devices that split each matmul (tensor parallel)")
    return g


def prompts_from_args(args: argparse.Namespace) -> list[str]:
    """--prompt values then --prompt-file lines; ValueError if none or one is empty."""
    prompts = list(args.prompt or [])
    if args.prompt_file:
        prompts += [line.strip() for line in read_text_lines(args.prompt_file, "--prompt-file") if line.strip()]
    if not prompts:
        raise ValueError("give --prompt TEXT [TEXT ...] or --prompt-file FILE")
    for i, p in enumerate(prompts):
        if not p.strip():
            raise ValueError(f"prompt {i} is empty")
    return prompts


def sampling_from_args(args: argparse.Namespace) -> DiMOOSampling:
    """Validated sampler settings (DiMOO defaults: N=64, cfg 4)."""
    sampling = DiMOOSampling(steps=64 if args.steps is None else args.steps, mode=args.mode, budget=args.budget,
                             cfg_scale=4.0 if args.cfg is None else args.cfg, temperature=args.temperature,
                             cache_ratio=args.cache_ratio, refresh_interval=args.refresh_interval,
                             warmup_ratio=args.warmup_ratio)
    sampling.validate()
    return sampling


def sampling_mesh(fsdp: int = 1, tensor: int = 1) -> Optional[jax.sharding.Mesh]:
    """The sampler's (data, fsdp, tensor) mesh over all devices, data = the devices left over; None on one
    device with nothing to split (the plain single-device sampler). Place the params with
    `migm_jax.sharding.param_shardings` (LLADA_RULES); the batch is split over data x fsdp (`batch_split`)."""
    if jax.device_count() == 1 and fsdp * tensor == 1:
        return None
    from migm_jax.sharding import make_mesh

    return make_mesh(-1, fsdp, tensor)


def batch_split(mesh: Optional[jax.sharding.Mesh]) -> int:
    """How many ways the sampler splits the batch: data x fsdp (1 without a mesh)."""
    return 1 if mesh is None else mesh.shape["data"] * mesh.shape["fsdp"]


def _sharded_target(weights_dir: str, mesh: jax.sharding.Mesh):
    """Stored shapes and dtypes with shardings by the partition rules, for a sharded restore."""
    from migm_jax.sharding import param_shardings

    return stored_target(weights_dir, lambda meta: param_shardings(meta, mesh))


def models_of(weights: str, configs: dict, **settings) -> DiMOOModels:
    """The modules of a 'dimoo' weights dir's configs (the shortcut only when present) with `settings` (DiMOOModels'
    dtype, attention_impl, matmul); one-line ValueError when it holds no LLaDA or no image decoder."""
    missing = [name for name in ("llada", "layout") if name not in configs]
    if missing:
        raise ValueError(f"{weights}/config.json lists no {' and '.join(missing)}; is this a DiMOO weights directory?")
    if "vq" not in configs:
        raise ValueError(f"{weights} holds no image decoder (no 'vq'): it was exported from a random teacher; "
                         "train from teacher_weights = a convert_weights.py directory (its VQ decoder and tokenizer "
                         "go into the export)")
    return DiMOOModels(LLaDAConfig.from_dict(configs["llada"]), TokenLayout.from_dict(configs["layout"]),
                       DiMOOShortcutConfig.from_dict(configs["shortcut"]) if "shortcut" in configs else None,
                       VQModelConfig.from_dict(configs["vq"]), **settings)


def run_sample(args: argparse.Namespace) -> None:
    """Samples the prompts in batches, prints compile and per-batch times, writes a PNG grid.

    Argument errors (settings, empty / too long prompt, image size, missing shortcut) are raised before
    the params are read."""
    sampling = sampling_from_args(args)
    prompts = prompts_from_args(args)
    _, configs = read_config(args.weights)
    if sampling.mode == "shortcut" and "shortcut" not in configs:
        raise ValueError(f"{args.weights} holds no shortcut; convert with a shortcut .pth or use --mode vanilla/reuse/cache")
    models = models_of(args.weights, configs, dtype=args.dtype, attention_impl=args.attention,
                       matmul="fp8" if args.matmul == "fp8" else None)
    check_size(args.height, args.width, models.vq.scale_factor)
    tokenizer = load_tokenizer(os.path.join(args.weights, TOKENIZER_DIR), args.trust_remote_code)
    # every prompt error before the weights are read; rows are sliced from this batch (one padded shape)
    everything = build_sequences(tokenizer, prompts, args.height, args.width, models.layout,
                                 models.vq.scale_factor, models.llada.max_sequence_length)

    mesh = sampling_mesh(args.fsdp, args.tensor)
    fn = build_sampler(models, sampling, decode=True, mesh=mesh)
    _, _, params = load_weights(args.weights, None if mesh is None else _sharded_target(args.weights, mesh))
    params = models.prepare_params(params)
    split = batch_split(mesh)
    bs = args.batch_size or len(prompts)
    bs = -(-bs // split) * split
    starts = range(0, len(prompts), bs)
    rows = lambda i: np.minimum(np.arange(i, i + bs), len(prompts) - 1)  # the last batch repeats its last prompt
    batch_at = lambda i: jax.tree_util.tree_map(lambda a: a[rows(i)], everything)
    key = jax.random.PRNGKey(args.seed)
    t0 = time.perf_counter()
    compiled = fn.lower(params, batch_at(0), image_keys(key, 0, bs)).compile()
    print(f"compile: {time.perf_counter() - t0:.2f} s")
    images, times = [], []
    for i in tqdm(starts, desc="sampling", unit="batch"):
        batch = batch_at(i)
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(params, batch, image_keys(key, i, bs)))  # image i: fold_in(seed, i)
        times.append(time.perf_counter() - t0)
        images.append(np.asarray(out["images"])[: len(prompts) - i])
    print(f"sampling: {np.mean(times):.3f} s per batch of {bs} ({np.mean(times) / bs:.3f} s per image, "
          f"{len(starts)} batches, {args.height}x{args.width}, mode {sampling.mode}, N={sampling.steps}"
          + (f", B={sampling.budget})" if sampling.budget else ")"))
    written = save_images(np.concatenate(images), args.out, args.save_each)
    print(f"wrote {written[0]}" + (f" and {len(written) - 1} images" if len(written) > 1 else ""))
