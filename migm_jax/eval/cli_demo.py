"""Evaluate vanilla / fewer_steps / reuse / shortcut sampling: FID, class accuracy and time per image.

  python -m migm_jax.eval --out results.json --plot pareto.png
  python -m migm_jax.eval --weights W --classifier C --num-samples 5000 --steps 16 --budgets 4 6 8 --out r.json

FID with the Inception-v3 of the FID papers (ImageNet weights): `python -m migm_jax.eval ref-stats --help`
and `python -m migm_jax.eval fid --help`.
"""

from __future__ import annotations

import argparse
import json
import os

from migm_jax.assets import DEMO_CLASSIFIER, DEMO_MASKGIT
from migm_jax.eval import harness
from migm_jax.eval.cli_common import add_compute_args, add_sampler_args, attention_impl, check_budgets, check_run_args, print_table, shared_sampling
from migm_jax.eval.plot import pareto_plot
from migm_jax.files import write_files_atomically


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m migm_jax.eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=DEMO_MASKGIT, help="'maskgit' weights dir with a shortcut (default: the demo)")
    p.add_argument("--classifier", default=DEMO_CLASSIFIER, help="'classifier' weights dir (default: the demo's)")
    p.add_argument("--num-samples", type=int, default=2000,
                   help="images per configuration and seed, and real images per split (>= 2)")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..K-1 per configuration")
    add_sampler_args(p)
    p.add_argument("--budgets", type=int, nargs="+", help="full steps B, 2..N (default: those of 4 6 8 below N)")
    p.add_argument("--batch-size", type=int, default=500, help="images per compiled batch")
    add_compute_args(p)
    p.add_argument("--out", required=True, help="results JSON to write")
    p.add_argument("--plot", help="Pareto plot PNG to write")
    return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """Everything that can be checked from the arguments alone (before any file is read)."""
    check_run_args(args)
    for option, path in (("--weights", args.weights), ("--classifier", args.classifier)):
        if not os.path.isdir(path):
            raise ValueError(f"{option}: no weights directory at {path}")


def run(args: argparse.Namespace) -> None:
    """Checks the arguments, then the weights' config (N), evaluates, writes the JSON [and plot], prints the table."""
    check_args(args)
    sampling = shared_sampling(args.weights, args)
    settings = harness.EvalSettings(args.weights, args.classifier, sampling, check_budgets(args.budgets, sampling.steps),
                                    args.num_samples, args.seeds, args.batch_size, args.dtype, attention_impl(args))
    result = harness.evaluate(settings)  # validates every sampler before loading the weights
    write_files_atomically([(args.out, lambda f: f.write(json.dumps(result, indent=2).encode()))])
    print(f"wrote {args.out}")
    if args.plot:
        pareto_plot(result, args.plot)
        print(f"wrote {args.plot}")
    print(f"real train vs test: FID {result['reference']['fid_train_vs_test']:.3f}, "
          f"classifier accuracy {result['reference']['accuracy_test']:.3f}")
    print_table(harness.summary(result["results"]))
