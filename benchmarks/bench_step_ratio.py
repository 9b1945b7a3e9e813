"""Cost of a full (base-model) step against a shortcut step of a trained weights dir (MaskGIT or DiMOO), at a
given batch.

  python benchmarks/bench_step_ratio.py --weights migm_jax/assets/demo/emoji --batch 500 [--out r.json]
  python benchmarks/bench_step_ratio.py --weights migm_jax/assets/demo/maskgit --batch 500

Times the compiled sampling loop (no decode) twice with the weights' own sampler settings (DiMOO: on their
prompts; MaskGIT: classes i % nclass): vanilla N steps (N full steps) and the shortcut at budget 2 (2 full
steps, N - 2 shortcut steps). A full step then costs F = t_vanilla / N and a shortcut step
S = (t_shortcut - 2 F) / (N - 2), each with its share of the sampling policy (CFG, Gumbel draws, re-masking)
and of the head; the ratio F / S is what bounds the speed-up of the shortcut at a budget (the released
DiMOO-8B: about 30x; MaskGIT-512: about 20x).
"""

from __future__ import annotations

import argparse
import dataclasses
import os

import jax
import numpy as np

from benchmarks.common import report, timed
from migm_jax.apps import dimoo as dimoo_app
from migm_jax.apps import maskgit as maskgit_app
from migm_jax.sampling import dimoo, maskgit
from migm_jax.sampling.dimoo_prompts import build_sequences, load_tokenizer
from migm_jax.weights import TOKENIZER_DIR, load_weights, read_config


def dimoo_case(weights: str, configs: dict, batch: int, attention):
    """(models, sampler module, vanilla settings, params, the sampler's condition input) of DiMOO weights."""
    used = dimoo_app.defaults(configs)
    models = dimoo_app.models_of(weights, configs, dtype="bfloat16", attention_impl=attention)
    tokenizer = load_tokenizer(os.path.join(weights, TOKENIZER_DIR))
    prompts = [used["prompts"][i % len(used["prompts"])] for i in range(batch)]
    cond = build_sequences(tokenizer, prompts, used["height"], used["width"], models.layout, models.vq.scale_factor)
    _, _, params = load_weights(weights)
    return models, dimoo, dimoo.trajectory_sampling(configs["sampling"]), models.prepare_params(params), cond


def maskgit_case(weights: str, configs: dict, batch: int, attention):
    """The same for MaskGIT weights: labels i % nclass."""
    models, params, _ = maskgit_app.load_pipeline(weights)
    models = dataclasses.replace(models, dtype="bfloat16", attention_impl=attention)
    labels = np.arange(batch, dtype=np.int32) % models.transformer.nclass
    return models, maskgit, maskgit.trajectory_sampling(configs["sampling"]), params, labels


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, help="'maskgit' or 'dimoo' weights dir with a shortcut and a sampling config")
    p.add_argument("--batch", type=int, default=500, help="images per call (each runs cond and uncond rows)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--attention", default="cudnn", help="attention_impl of teacher and shortcut (cudnn | xla | exact)")
    p.add_argument("--out", help="JSON file to write")
    args = p.parse_args()
    family, configs = read_config(args.weights)
    case = {"dimoo": dimoo_case, "maskgit": maskgit_case}[family]
    models, sampler, vanilla, params, cond = case(args.weights, configs, args.batch,
                                                  None if args.attention == "exact" else args.attention)
    shortcut = dataclasses.replace(vanilla, mode="shortcut", budget=2)
    params = jax.device_put(params)
    key = jax.random.PRNGKey(0)
    seconds = {}
    for name, sampling in (("vanilla", vanilla), ("shortcut_b2", shortcut)):
        fn = sampler.build_sampler(models, sampling, decode=False)
        seconds[name] = timed(fn, params, cond, key, repeats=args.repeats).seconds
    n = vanilla.steps
    full = seconds["vanilla"] / n
    short = (seconds["shortcut_b2"] - 2 * full) / (n - 2)
    report({"device": jax.devices()[0].device_kind, "batch": args.batch, "steps": n, "seconds": seconds,
            "full_step_ms": 1e3 * full, "shortcut_step_ms": 1e3 * short, "ratio": full / short,
            "weights": args.weights, "family": family, "attention": args.attention}, args.out)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
