"""Evaluate vanilla / fewer_steps / reuse / shortcut sampling: FID, class accuracy and time per image.

  python -m migm_jax.eval --out results.json --plot pareto.png
  python -m migm_jax.eval --weights W --classifier C --num-samples 5000 --steps 16 --budgets 4 6 8 --out r.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

from migm_jax.assets import DEMO_CLASSIFIER, DEMO_MASKGIT
from migm_jax.eval import harness
from migm_jax.eval.atomic import write_atomic
from migm_jax.eval.plot import pareto_plot
from migm_jax.weights import read_config

DEFAULT_BUDGETS = (4, 6, 8)  # kept where 2 <= B < N when --budgets is not given


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m migm_jax.eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=DEMO_MASKGIT, help="'maskgit' weights dir with a shortcut (default: the demo)")
    p.add_argument("--classifier", default=DEMO_CLASSIFIER, help="'classifier' weights dir (default: the demo's)")
    p.add_argument("--num-samples", type=int, default=2000,
                   help="images per configuration and seed, and real images per split (>= 2)")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..K-1 per configuration")
    p.add_argument("--steps", type=int, help="N (default: the weights' recommended sampling, else 16)")
    p.add_argument("--budgets", type=int, nargs="+", help="full steps B, 2..N (default: those of 4 6 8 below N)")
    p.add_argument("--batch-size", type=int, default=500, help="images per compiled batch")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="transformer / shortcut compute")
    p.add_argument("--out", required=True, help="results JSON to write")
    p.add_argument("--plot", help="Pareto plot PNG to write")
    return p.parse_args(argv)


def check_output(path: str, ext: str, option: str) -> None:
    """ValueError unless `path` ends in `ext` and its directory exists and is writable."""
    if os.path.splitext(path)[1].lower() != ext:
        raise ValueError(f"{option} must be a {ext} file, got {path}")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
        raise ValueError(f"cannot write {path}: {directory} is not a writable directory")


def check_budgets(budgets: list[int] | None, steps: int) -> tuple[int, ...]:
    """The budgets to evaluate: the given ones (each in 2..steps) or the defaults below `steps`."""
    if budgets is None:
        kept = tuple(b for b in DEFAULT_BUDGETS if b < steps)
        if not kept:
            raise ValueError(f"none of the default budgets {' '.join(map(str, DEFAULT_BUDGETS))} is below "
                             f"{steps} steps; give --budgets")
        return kept
    bad = [b for b in budgets if not 2 <= b <= steps]
    if bad:
        raise ValueError(f"--budgets must be in 2..steps ({steps}), got {bad[0]}")
    return tuple(sorted(set(budgets)))


def check_args(args: argparse.Namespace) -> None:
    """Everything that can be checked from the arguments alone (before any file is read)."""
    if args.num_samples < 2:
        raise ValueError(f"--num-samples must be >= 2 (a covariance needs two images), got {args.num_samples}")
    for option, value in (("--seeds", args.seeds), ("--batch-size", args.batch_size)):
        if value < 1:
            raise ValueError(f"{option} must be >= 1, got {value}")
    if args.steps is not None:
        if args.steps < 2:
            raise ValueError(f"--steps must be >= 2, got {args.steps}")
        check_budgets(args.budgets, args.steps)
    check_output(args.out, ".json", "--out")
    if args.plot:
        check_output(args.plot, ".png", "--plot")
    for option, path in (("--weights", args.weights), ("--classifier", args.classifier)):
        if not os.path.isdir(path):
            raise ValueError(f"{option}: no weights directory at {path}")


def print_table(rows: list[dict]) -> None:
    print(f"{'mode':<12} {'steps':>5} {'budget':>6}  {'FID':>17}  {'accuracy':>8}  {'s/image':>9}")
    for r in rows:
        fid = f"{r['fid_mean']:.3f} ± {r['fid_std']:.3f}"
        print(f"{r['mode']:<12} {r['steps']:>5} {r['budget']:>6}  {fid:>17}  {r['accuracy_mean']:>8.3f}  "
              f"{r['seconds_per_image_mean']:>9.2e}")


def run(args: argparse.Namespace) -> None:
    """Checks the arguments, then the weights' config (N), evaluates, writes the JSON [and plot], prints the table."""
    check_args(args)
    sampling = harness.base_sampling(read_config(args.weights)[1], args.steps)
    settings = harness.EvalSettings(args.weights, args.classifier, sampling, check_budgets(args.budgets, sampling.steps),
                                    args.num_samples, args.seeds, args.batch_size, args.dtype)
    result = harness.evaluate(settings)  # validates every sampler before loading the weights
    write_atomic(args.out, lambda tmp: pathlib.Path(tmp).write_text(json.dumps(result, indent=2)))
    print(f"wrote {args.out}")
    if args.plot:
        pareto_plot(result, args.plot)
        print(f"wrote {args.plot}")
    print(f"real train vs test: FID {result['reference']['fid_train_vs_test']:.3f}, "
          f"classifier accuracy {result['reference']['accuracy_test']:.3f}")
    print_table(harness.summary(result["results"]))


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
