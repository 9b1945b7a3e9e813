"""Cost of a full (base-model) step against a shortcut step of a trained DiMOO weights dir, at a given batch.

  python benchmarks/bench_step_ratio.py --weights migm_jax/assets/demo/emoji --batch 500 [--out r.json]

Times the compiled sampling loop (no decode) twice on the weights' own prompts and settings: vanilla N
steps (N full steps) and the shortcut at budget 2 (2 full steps, N - 2 shortcut steps). A full step then
costs F = t_vanilla / N and a shortcut step S = (t_shortcut - 2 F) / (N - 2), each with its share of the
sampling policy (CFG, Gumbel draws, re-masking) and of the head; the ratio F / S is what bounds the speed-up
of the shortcut at a budget (the released DiMOO-8B: about 30x).
"""

from __future__ import annotations

import argparse
import dataclasses
import os

import jax
import numpy as np

from benchmarks.common import report, timed
from migm_jax.apps.dimoo import defaults, models_of
from migm_jax.sampling.dimoo import build_sampler, trajectory_sampling
from migm_jax.sampling.dimoo_prompts import build_sequences, load_tokenizer
from migm_jax.weights import TOKENIZER_DIR, load_weights, read_config


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, help="'dimoo' weights dir with a shortcut and a sampling config")
    p.add_argument("--batch", type=int, default=500, help="images per call (each runs cond and uncond rows)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--attention", default="cudnn", help="attention_impl of teacher and shortcut (cudnn | xla | exact)")
    p.add_argument("--out", help="JSON file to write")
    args = p.parse_args()
    _, configs = read_config(args.weights)
    used = defaults(configs)
    models = models_of(args.weights, configs, dtype="bfloat16",
                       attention_impl=None if args.attention == "exact" else args.attention)
    vanilla = trajectory_sampling(configs["sampling"])
    shortcut = dataclasses.replace(vanilla, mode="shortcut", budget=2)
    tokenizer = load_tokenizer(os.path.join(args.weights, TOKENIZER_DIR))
    prompts = [used["prompts"][i % len(used["prompts"])] for i in range(args.batch)]
    batch = build_sequences(tokenizer, prompts, used["height"], used["width"], models.layout, models.vq.scale_factor)
    _, _, params = load_weights(args.weights)
    params = jax.device_put(models.prepare_params(params))
    key = jax.random.PRNGKey(0)
    seconds = {}
    for name, sampling in (("vanilla", vanilla), ("shortcut_b2", shortcut)):
        fn = build_sampler(models, sampling, decode=False)
        seconds[name] = timed(fn, params, batch, key, repeats=args.repeats).seconds
    n = vanilla.steps
    full = seconds["vanilla"] / n
    short = (seconds["shortcut_b2"] - 2 * full) / (n - 2)
    report({"device": jax.devices()[0].device_kind, "batch": args.batch, "steps": n, "seconds": seconds,
            "full_step_ms": 1e3 * full, "shortcut_step_ms": 1e3 * short, "ratio": full / short,
            "weights": args.weights}, args.out)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
