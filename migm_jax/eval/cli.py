"""Evaluate vanilla / fewer_steps / reuse / ML-Cache (DiMOO) / shortcut sampling: FID, accuracy, fidelity to
vanilla and time per image, for MaskGIT (classes) and Lumina-DiMOO (text-to-image) weights alike.

  python -m migm_jax.eval --out results.json --plot pareto.png
  python -m migm_jax.eval --weights W --classifier C --num-samples 5000 --steps 16 --budgets 4 6 8 --out r.json
  python -m migm_jax.eval --weights EMOJI --classifier EMOJI_CLASSIFIER --data data/emoji --split heldout \\
      --budgets 8 16 32 --out heldout.json --plot heldout.png

The weights' family decides the sampler and the conditions: MaskGIT draws class i % nclass against the
test split of --data (data/fashion: python -m migm_jax.data fashion --out data/fashion); DiMOO draws caption i % n of the --split of --data (or of --prompt-file) against that
split's images of the same captions (train: seen prompts; heldout: known emoji in a style seen only on others).
Rerunning the same command continues an interrupted run.

Cost: every configuration samples --num-samples images per seed (the default run: 2,000 x 3 seeds x 10
configurations of the MaskGIT demo, 13 with ML-Cache for DiMOO), meant for a GPU (the MaskGIT demo's run: about
4 minutes on one H200). On a CPU an image of the MaskGIT demo costs seconds (vanilla N = 16: 2-5 s measured on
a shared 2-core machine at the default CPU batch, at most 16): the default run takes days there, and
`--num-samples 50 --seeds 1 --budgets 4` (200 images) 5 to 10 minutes.

FID with the Inception-v3 of the FID papers (ImageNet weights): `python -m migm_jax.eval ref-stats --help`
and `python -m migm_jax.eval fid --help`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

import jax

from migm_jax.apps.checks import check_matmul
from migm_jax.assets import DEMO_MASKGIT
from migm_jax.eval import harness
from migm_jax.eval.families import FAMILIES, Family, family_of
from migm_jax.eval.plan import base_sampling, check_budgets, default_batch_size
from migm_jax.eval.plot import pareto_plot
from migm_jax.eval.stats import check_batch_size, summary
from migm_jax.files import check_output_file
from migm_jax.models.layers import attention_for
from migm_jax.weights import read_config

SAMPLER_FLAGS = {"cfg": "--cfg", "sm_temp": "--sm-temp", "r_temp": "--r-temp", "temperature": "--temperature",
                 "cache_ratio": "--cache-ratio"}  # argparse dest -> option; each family maps some to its fields
DIMOO_ONLY = {"split": "--split", "prompt_file": "--prompt-file"}


def add_sampler_args(p: argparse.ArgumentParser, dimoo: bool = True) -> None:
    """--steps and the sampler settings every configuration shares (default: the weights' recommended ones)."""
    p.add_argument("--steps", type=int, help="N (default: the weights' recommended sampling, else MaskGIT 16, DiMOO 64)")
    p.add_argument("--cfg", type=float, help="classifier-free guidance weight (MaskGIT cfg_w, DiMOO cfg_scale)")
    p.add_argument("--sm-temp", type=float, help="MaskGIT: softmax temperature (multiplies the logits)")
    p.add_argument("--r-temp", type=float, help="MaskGIT: gumbel scale of the confidence randomisation")
    if dimoo:
        p.add_argument("--temperature", type=float, help="DiMOO: Gumbel temperature of sampling and re-masking")
        p.add_argument("--cache-ratio", type=float, help="DiMOO ML-Cache: fraction of positions served from the cache "
                       "on a partial step (its full steps are placed to match each budget)")


def add_compute_args(p: argparse.ArgumentParser, dtype: str | None = "float32") -> None:
    """--dtype and --attention of the base model and shortcut."""
    default = f"default {dtype}" if dtype else "default: MaskGIT float32, DiMOO bfloat16 (as the released LLaDA)"
    p.add_argument("--dtype", default=dtype, choices=["float32", "bfloat16"],
                   help=f"base model / shortcut compute ({default})")
    p.add_argument("--attention", default="auto", choices=["auto", "cudnn", "xla", "exact"],
                   help="attention kernel: auto = cudnn (fused) on GPU in bfloat16, exact (float32 softmax) elsewhere")


def attention_impl(choice: str, dtype: str):
    """The models' attention_impl for --attention / the compute dtype on this backend (None: the exact path)."""
    return attention_for(choice, dtype, jax.default_backend())


def shared_sampling(family: Family, configs: dict, args: argparse.Namespace):
    """The weights' recommended sampling with the given --steps and sampler options in its place."""
    given = {field: getattr(args, dest) for dest, field in family.flags.items() if getattr(args, dest, None) is not None}
    return dataclasses.replace(base_sampling(family.sampling, configs, args.steps, family.default_steps), **given)


def check_run_args(args: argparse.Namespace, needs_budgets: bool = True) -> None:
    """The checks the harness and the Inception evaluation share: sample counts, batch, steps, budgets (when some
    mode needs them), output files."""
    if args.num_samples < 2:
        raise ValueError(f"--num-samples must be >= 2 (a covariance needs two images), got {args.num_samples}")
    if getattr(args, "reference_samples", None) is not None and args.reference_samples < 2:
        raise ValueError(f"--reference-samples must be >= 2 (a covariance needs two images), got {args.reference_samples}")
    for option, value in (("--seeds", args.seeds), ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise ValueError(f"{option} must be >= 1, got {value}")
    if args.batch_size is not None:
        check_batch_size(args.batch_size, jax.device_count())
    if args.steps is not None:
        if args.steps < 2:
            raise ValueError(f"--steps must be >= 2, got {args.steps}")
        if needs_budgets and args.budgets is not None:
            check_budgets(args.budgets, args.steps, ())
    check_output_file(args.out, (".json",), "--out", "a JSON file")
    if args.plot:
        check_output_file(args.plot, (".png",), "--plot")


def print_table(rows: list[dict]) -> None:
    """The summary rows: FID mean ± std over seeds, then accuracy or Inception Score, [the fidelity to vanilla,]
    then seconds per image."""
    quality = "accuracy" if "accuracy_mean" in rows[0] else "IS"
    fidelity = "equal_tokens_mean" in rows[0]
    print(f"{'mode':<12} {'steps':>5} {'budget':>6}  {'FID':>17}  {quality:>15}  "
          + (f"{'equal tok':>9}  {'PSNR dB':>7}  " if fidelity else "") + f"{'s/image':>9}")
    for r in rows:
        fid = f"{r['fid_mean']:.3f} ± {r['fid_std']:.3f}"
        score = f"{r['accuracy_mean']:.3f}" if quality == "accuracy" else f"{r['is_mean']:.2f} ± {r['is_std_mean']:.2f}"
        close = f"{r['equal_tokens_mean']:>9.3f}  {r['psnr_mean']:>7.2f}  " if fidelity else ""
        print(f"{r['mode']:<12} {r['steps']:>5} {r['budget']:>6}  {fid:>17}  {score:>15}  {close}"
              f"{r['seconds_per_image_mean']:>9.2e}")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m migm_jax.eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=DEMO_MASKGIT, help="'maskgit' or 'dimoo' weights dir with a shortcut "
                   "(default: the MaskGIT demo)")
    p.add_argument("--classifier", help="'classifier' weights dir, the metric network (default: the demo's of the "
                   "weights' family)")
    p.add_argument("--num-samples", type=int, default=2000,
                   help="images per configuration and seed, and real images in the reference (>= 2)")
    p.add_argument("--reference-samples", type=int, help="real images of the FID reference (default --num-samples; "
                   "e.g. 10000: the whole Fashion-MNIST test split); the train-vs-test floor uses --num-samples")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..K-1 per configuration")
    add_sampler_args(p)
    p.add_argument("--budgets", type=int, nargs="+", help="full steps B, 2..N (default: those below N of MaskGIT "
                   "4 6 8, DiMOO N/8 N/4 N/2)")
    p.add_argument("--batch-size", type=int, help="images per compiled batch (default: the fewest equal batches of at "
                   "most 16 images on CPU, 500 on an accelerator, a multiple of the devices)")
    g = p.add_argument_group("real images and prompts")
    g.add_argument("--data", help="dataset folder (default: DiMOO data/emoji, MaskGIT data/fashion)")
    g.add_argument("--split", help="DiMOO: the split whose captions are the prompts and whose images the reference: "
                   "train (seen prompts, the default) or heldout")
    g.add_argument("--prompt-file", help="DiMOO: captions of the split to draw, one per line (default: all of them)")
    add_compute_args(p, dtype=None)
    p.add_argument("--matmul", default="bf16", choices=["bf16", "fp8"],
                   help="DiMOO: LLaDA's block projections in the compute dtype, or fp8 (Hopper GPUs)")
    p.add_argument("--force-fp8", action="store_true", help="run --matmul fp8 where it is only emulated (checks)")
    p.add_argument("--out", required=True, help="results JSON to write (and to continue, when it exists)")
    p.add_argument("--plot", help="Pareto plots PNG to write (quality against full steps and against time)")
    return p.parse_args(argv)


def check_family_args(args: argparse.Namespace, family: Family) -> None:
    """ValueError for an option the weights' family does not take."""
    other = {dest: flag for dest, flag in SAMPLER_FLAGS.items() if dest not in family.flags}
    if family.name != "dimoo":
        other.update(DIMOO_ONLY)
        if args.matmul != "bf16":
            other["matmul"] = "--matmul fp8"
    for dest, flag in other.items():
        if getattr(args, dest, None) not in (None, "bf16"):
            takes = [name for name, f in FAMILIES.items() if f is not family]
            raise ValueError(f"{flag} applies to {' or '.join(takes)} weights; {args.weights} holds {family.name} weights")


def run(args: argparse.Namespace) -> None:
    """Checks the arguments, then the weights' config (family, N, budgets); evaluates (or continues) into --out,
    writes the plot, prints the table."""
    check_run_args(args)
    if not os.path.isdir(args.weights):
        raise ValueError(f"--weights: no weights directory at {args.weights}")
    name, configs = read_config(args.weights)
    family = family_of(name, args.weights)
    check_family_args(args, family)
    check_matmul(args.matmul, args.force_fp8)
    sampling = shared_sampling(family, configs, args)
    dtype = args.dtype or family.dtype
    settings = harness.EvalSettings(
        args.weights, args.classifier or family.classifier, family.name, sampling,
        check_budgets(args.budgets, sampling.steps, family.budgets(sampling.steps)), args.num_samples, args.seeds,
        args.batch_size or default_batch_size(args.num_samples, jax.device_count(), jax.default_backend()), dtype,
        attention_impl(args.attention, dtype), "fp8" if args.matmul == "fp8" else None,
        args.data or family.data, args.split or family.split, args.prompt_file, args.reference_samples)
    result = harness.evaluate(settings, args.out)
    print(f"wrote {args.out}")
    if args.plot:
        pareto_plot(result, args.plot)
        print(f"wrote {args.plot}")
    reference = result["reference"]
    print("real images: classifier accuracy " + f"{reference['accuracy_real']:.3f}"
          + "".join(f", {k.replace('_', ' ')} {v:.3f}" for k, v in reference.items() if k.startswith("fid_")))
    print_table(summary(result["results"]))
