"""Argument checks and the summary table that the demo harness and the Inception FID commands share."""

from __future__ import annotations

import argparse
import dataclasses

import jax

from migm_jax.eval.batch_stats import check_batch_size
from migm_jax.eval.harness import base_sampling
from migm_jax.files import check_output_file
from migm_jax.models.layers import attention_for
from migm_jax.sampling.maskgit import MaskGITSampling
from migm_jax.weights import read_config

DEFAULT_BUDGETS = (4, 6, 8)  # kept where 2 <= B < N when --budgets is not given


SAMPLER_FLAGS = {"cfg": "cfg_w", "sm_temp": "sm_temp", "r_temp": "r_temp"}  # argparse dest -> MaskGITSampling field


def add_sampler_args(p: argparse.ArgumentParser) -> None:
    """--steps and the sampler settings every configuration shares (default: the weights' recommended ones)."""
    p.add_argument("--steps", type=int, help="N (default: the weights' recommended sampling, else 16)")
    p.add_argument("--cfg", type=float, help="classifier-free guidance weight")
    p.add_argument("--sm-temp", type=float, help="softmax temperature (multiplies the logits)")
    p.add_argument("--r-temp", type=float, help="gumbel scale of the confidence randomisation")


def add_compute_args(p: argparse.ArgumentParser) -> None:
    """--dtype and --attention of the transformer and shortcut."""
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="transformer / shortcut compute")
    p.add_argument("--attention", default="auto", choices=["auto", "cudnn", "xla", "exact"],
                   help="attention kernel: auto = cudnn (fused) on GPU in bfloat16, exact (float32 softmax) elsewhere")


def attention_impl(args: argparse.Namespace):
    """The models' attention_impl for --attention / --dtype on this backend (None: the exact path)."""
    return attention_for(args.attention, args.dtype, jax.default_backend())


def shared_sampling(weights_dir: str, args: argparse.Namespace) -> MaskGITSampling:
    """The weights' recommended sampling with the given --steps / --cfg / --sm-temp / --r-temp in its place."""
    given = {field: getattr(args, dest) for dest, field in SAMPLER_FLAGS.items() if getattr(args, dest) is not None}
    return dataclasses.replace(base_sampling(read_config(weights_dir)[1], args.steps), **given)


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


def check_run_args(args: argparse.Namespace, needs_budgets: bool = True) -> None:
    """The checks the demo and the Inception evaluation share: sample counts, steps, budgets (when some mode
    needs them), output files."""
    if args.num_samples < 2:
        raise ValueError(f"--num-samples must be >= 2 (a covariance needs two images), got {args.num_samples}")
    for option, value in (("--seeds", args.seeds), ("--batch-size", args.batch_size)):
        if value < 1:
            raise ValueError(f"{option} must be >= 1, got {value}")
    check_batch_size(args.batch_size, jax.device_count())
    if args.steps is not None:
        if args.steps < 2:
            raise ValueError(f"--steps must be >= 2, got {args.steps}")
        if needs_budgets:
            check_budgets(args.budgets, args.steps)
    check_output_file(args.out, (".json",), "--out", "a JSON file")
    if args.plot:
        check_output_file(args.plot, (".png",), "--plot")


def print_table(rows: list[dict]) -> None:
    """The summary rows: FID mean ± std over seeds, then accuracy or Inception Score, then seconds per image."""
    quality = "accuracy" if "accuracy_mean" in rows[0] else "IS"
    print(f"{'mode':<12} {'steps':>5} {'budget':>6}  {'FID':>17}  {quality:>15}  {'s/image':>9}")
    for r in rows:
        fid = f"{r['fid_mean']:.3f} ± {r['fid_std']:.3f}"
        score = f"{r['accuracy_mean']:.3f}" if quality == "accuracy" else f"{r['is_mean']:.2f} ± {r['is_std_mean']:.2f}"
        print(f"{r['mode']:<12} {r['steps']:>5} {r['budget']:>6}  {fid:>17}  {score:>15}  "
              f"{r['seconds_per_image_mean']:>9.2e}")
