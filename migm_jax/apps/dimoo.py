"""Lumina-DiMOO-Shortcut glue for the CLIs: conversion of the released checkpoints, text-to-image sampling to PNG."""

from __future__ import annotations

import argparse
import os
import shutil
from typing import Optional

import jax
import numpy as np

from migm_jax.apps import rows
from migm_jax.convert.diffusers import diffusers_vq
from migm_jax.convert.dimoo import dimoo_shortcut, dimoo_token_layout, llada, llada_config, tokenizer_files
from migm_jax.files import check_output_dir, read_text_lines
from migm_jax.models.dimoo_shortcut import DiMOOShortcutConfig
from migm_jax.models.llada import LLaDAConfig
from migm_jax.models.vqmodel import VQModelConfig
from migm_jax.sampling.dimoo import DiMOOModels, DiMOOSampling, build_sampler
from migm_jax.sampling.dimoo_prompts import (PromptBatch, TokenLayout, build_sequences, check_size, load_tokenizer,
                                             unknown_words, word_vocabulary)
from migm_jax.weights import PROMPTS_FILE, TOKENIZER_DIR, load_weights, read_config, save_weights, stored_target

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


def add_sample_args(parser: argparse.ArgumentParser, shown: Optional[dict] = None) -> argparse._ArgumentGroup:
    """Adds this family's sampling options to `parser`; returns their group. Unset options take
    `defaults(configs)`: the weights' 'sampling' config, else the original's. shown: those defaults for
    the weights at hand (their values appear in --help), None when not known."""
    note = lambda dest, otherwise: rows.default_note(shown, dest, otherwise)
    if shown is not None and shown["prompts"]:
        prompts_note = f"default: the weights' {len(shown['prompts'])} prompts: " + "; ".join(shown["prompts"]).replace("%", "%%")
    else:
        prompts_note = "default: the prompts the weights recommend, if any"
    g = parser.add_argument_group("Lumina-DiMOO (text to image)")
    g.add_argument("--prompt", nargs="+", action="extend",
                   help=f"text prompts, one image each (used verbatim); repeat --prompt or list several ({prompts_note})")
    g.add_argument("--prompt-file", "--prompts-file", dest="prompt_file",
                   help="text file with one prompt per line (lines are stripped, blanks skipped)")
    g.add_argument("--list-prompts", action="store_true",
                   help=f"print the prompts the weights know (their {PROMPTS_FILE}: what the model was trained on; "
                        "else the words of a word-level tokenizer) and exit")
    g.add_argument("--trust-remote-code", action="store_true",
                   help="let the tokenizer run the Python code shipped in its folder (as the original loads it)")
    g.add_argument("--height", type=int, help=f"image height in pixels, a multiple of the VQ's downsampling factor "
                                              f"({note('height', 1024)})")
    g.add_argument("--width", type=int, help=f"image width in pixels ({note('width', 1024)})")
    g.add_argument("--temperature", type=float,
                   help=f"Gumbel temperature of sampling and re-masking ({note('temperature', 1.0)})")
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


ORIGINAL = {"steps": 64, "cfg_scale": 4.0, "temperature": 1.0, "height": 1024, "width": 1024}  # infer.py's
OPTIONS = {"steps": "steps", "cfg": "cfg_scale", "temperature": "temperature", "height": "height",
           "width": "width"}  # sample.py option (dest) -> key of the weights' 'sampling' config


def defaults(configs: dict) -> dict:
    """What each omitted option of sample.py (by dest) becomes for weights with `configs`: the weights'
    'sampling' config (training export: the trajectories' steps, cfg_scale, temperature, plus sample.py's
    `SAMPLE_DEFAULTS` budget, height, width, prompts), else the original infer.py's (N=64, cfg 4,
    temperature 1, 1024x1024); 'budget' and 'prompts' None when the weights recommend none."""
    recommended = configs.get("sampling", {})
    return {**{dest: recommended.get(key, ORIGINAL[key]) for dest, key in OPTIONS.items()},
            "budget": recommended.get("budget"), "prompts": recommended.get("prompts")}


def prompts_from_args(args: argparse.Namespace, recommended: Optional[list[str]] = None) -> list[str]:
    """--prompt values then --prompt-file lines, else `recommended` (the weights' prompts); ValueError if
    there are none or one is empty."""
    prompts = list(args.prompt or [])
    if args.prompt_file:
        lines = [line.strip() for line in read_text_lines(args.prompt_file, "--prompt-file") if line.strip()]
        if not lines:
            raise ValueError(f"--prompt-file {args.prompt_file} holds no prompt (no line with text)")
        prompts += lines
    if not prompts and not args.prompt_file:
        prompts = list(recommended or [])
    if not prompts:
        raise ValueError("give --prompt TEXT [TEXT ...] or --prompt-file FILE (these weights recommend no prompts)")
    for i, p in enumerate(prompts):
        if not p.strip():
            raise ValueError(f"prompt {i} is empty")
    return prompts


def sampling_from_args(args: argparse.Namespace, mode: str, configs: dict) -> DiMOOSampling:
    """Validated sampler settings for `mode`: the options given, else `defaults(configs)`."""
    return sampling_for(mode, vars(args), configs)


def sampling_for(mode: str, given: dict, configs: dict) -> DiMOOSampling:
    """Validated sampler settings for `mode` from `given` (sample.py's option dests -> values; an absent or
    None value takes `defaults(configs)`, the ML-Cache settings DiMOOSampling's)."""
    used = defaults(configs)
    pick = lambda dest: used[dest] if given.get(dest) is None else given[dest]
    cache = {field: given[field] for field in ("cache_ratio", "refresh_interval", "warmup_ratio")
             if given.get(field) is not None}
    steps = pick("steps")
    sampling = DiMOOSampling(steps=steps, mode=mode, budget=rows.chosen_budget(mode, given.get("budget"),
                                                                               used["budget"], steps),
                             cfg_scale=pick("cfg"), temperature=pick("temperature"), **cache)
    sampling.validate()
    return sampling


def list_prompts(args: argparse.Namespace) -> None:
    """Prints the prompts of the weights dir's PROMPTS_FILE, else the words of its word-level tokenizer
    (one per line), else a line saying that any text is a prompt."""
    path = os.path.join(args.weights, PROMPTS_FILE)
    if os.path.isfile(path):
        print("\n".join(line for line in read_text_lines(path, PROMPTS_FILE) if line.strip()))
        return
    words = word_vocabulary(load_tokenizer(os.path.join(args.weights, TOKENIZER_DIR), args.trust_remote_code))
    if words is None:
        print(f"{args.weights} lists no prompts (no {PROMPTS_FILE}) and its tokenizer is not word-level: any text is a prompt")
    else:
        print("\n".join(words))


def check_vocabulary(tokenizer, prompts: list[str], list_command: str) -> None:
    """ValueError (one line) naming the first prompt with a word the tokenizer does not know (encoded as its
    unknown token), and the command that lists the known prompts."""
    for p in prompts:
        unknown = unknown_words(tokenizer, p)
        if unknown:
            words = ", ".join(repr(w) for w in unknown)
            raise ValueError(f"prompt {p!r}: {'the word' if len(unknown) == 1 else 'the words'} {words} "
                             f"{'is' if len(unknown) == 1 else 'are'} not in the model's vocabulary; "
                             f"`{list_command}` lists the known prompts")


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


def list_command(weights: str) -> str:
    """The sample.py command that lists the prompts of `weights` (no --weights for the embedded demo)."""
    from migm_jax.assets import DEMO_EMOJI

    same = os.path.abspath(weights) == os.path.abspath(DEMO_EMOJI)
    return "python sample.py --list-prompts" + ("" if same else f" --weights {weights}")


def check_samplings(weights: str, configs: dict, models: DiMOOModels, samplings: list[DiMOOSampling], height: int,
                    width: int) -> tuple[int, int]:
    """The token grid (gh, gw) of a height x width image; one-line ValueError for a shortcut sampler when the
    weights hold no shortcut, a size that is not a multiple of the VQ's factor, steps the image cannot take."""
    if any(s.mode == "shortcut" for s in samplings) and "shortcut" not in configs:
        raise ValueError(f"{weights} holds no shortcut; convert with a shortcut .pth or use --mode vanilla/reuse/cache")
    gh, gw = check_size(height, width, models.vq.scale_factor)
    for sampling in samplings:
        sampling.validate(gh * gw)
    return gh, gw


def prompt_batch(weights: str, tokenizer, models: DiMOOModels, prompts: list[str], height: int, width: int
                 ) -> PromptBatch:
    """The `PromptBatch` of `prompts` for height x width images (`build_sequences`); one-line ValueError for a
    word the tokenizer does not know (naming the command that lists the known prompts), an empty or too long
    prompt."""
    check_vocabulary(tokenizer, prompts, list_command(weights))
    return build_sequences(tokenizer, prompts, height, width, models.layout, models.vq.scale_factor,
                           models.llada.max_sequence_length)


def run_sample(args: argparse.Namespace) -> None:
    """Samples the prompts (given, else the weights' own) with each requested mode (default: vanilla, and
    the shortcut when the weights hold one and a budget is known: --budget or the weights' recommended
    one), prints compile and sampling times, writes one PNG (a labelled row per mode when there are
    several, the prompts above the columns).

    Argument errors (settings, empty / too long / out-of-vocabulary prompt, image size, steps the image
    cannot take, missing shortcut) are raised before the params are read."""
    _, configs = read_config(args.weights)
    used = defaults(configs)
    with_shortcut = "shortcut" in configs and (args.budget is not None or used["budget"] is not None)
    modes = [args.mode] if args.mode else ["vanilla"] + (["shortcut"] if with_shortcut else [])
    samplings = [sampling_from_args(args, mode, configs) for mode in modes]
    prompts = prompts_from_args(args, used["prompts"])
    models = models_of(args.weights, configs, dtype=args.dtype, attention_impl=args.attention,
                       matmul="fp8" if args.matmul == "fp8" else None)
    height = used["height"] if args.height is None else args.height
    width = used["width"] if args.width is None else args.width
    check_samplings(args.weights, configs, models, samplings, height, width)
    tokenizer = load_tokenizer(os.path.join(args.weights, TOKENIZER_DIR), args.trust_remote_code)
    # every prompt error before the weights are read; rows are sliced from this batch (one padded shape)
    everything = prompt_batch(args.weights, tokenizer, models, prompts, height, width)

    mesh = sampling_mesh(args.fsdp, args.tensor)
    fns = [build_sampler(models, sampling, decode=True, mesh=mesh) for sampling in samplings]
    _, _, params = load_weights(args.weights, None if mesh is None else _sharded_target(args.weights, mesh))
    params = models.prepare_params(params)
    split = batch_split(mesh)
    bs = -(-(args.batch_size or len(prompts)) // split) * split
    batch_of = lambda idx: jax.tree_util.tree_map(lambda a: a[idx], everything)
    images_rows, names = [], []
    for sampling, fn in zip(samplings, fns):
        images, compile_s, times = rows.generate(fn, params, batch_of, len(prompts), bs, args.seed,
                                                 rows.describe(sampling))
        print(rows.timing_line(sampling, len(prompts), compile_s, times) + f", {height}x{width}")
        images_rows.append(images)
        names.append(f"{rows.describe(sampling)}  {np.sum(times):.2f} s")
    written = rows.save_rows(images_rows, names, prompts, args.out, args.save_each)
    print(f"wrote {written[0]}" + (f" and {len(written) - 1} images" if len(written) > 1 else ""))
