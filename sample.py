#!/usr/bin/env python
r"""Generate images with MaskGIT-Shortcut or Lumina-DiMOO-Shortcut weights converted by convert_weights.py.

  python sample.py        # the embedded demo model: one image per class, vanilla and shortcut -> samples.png
  python sample.py --weights W --labels 1 7 282 604 --steps 32 --budget 12 --mode shortcut --out samples.png
  python sample.py --weights W --prompt "A photo of a bench." --height 1024 --width 1024 --steps 64 \
      --budget 14 --mode shortcut --cfg 4 --seed 1 --out bench.png
  python sample.py --demo --out demo.png      # small random model (untrained), no weights needed
"""

import argparse
import sys

from migm_jax.apps import dimoo, maskgit
from migm_jax.apps.checks import check_sample_args
from migm_jax.sampling.schedules import check_budget
from migm_jax.weights import read_config


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", help="directory written by convert_weights.py (or by train.py export); default: "
                                     "the embedded demo MaskGIT-Shortcut trained on the synthetic shapes")
    p.add_argument("--demo", action="store_true", help="use a small randomly initialised (untrained) MaskGIT model")
    p.add_argument("--mode", choices=["vanilla", "shortcut", "reuse", "cache"],
                   help="vanilla: base model every step; shortcut/reuse: --budget full steps; cache: DiMOO ML-Cache "
                        "(default: MaskGIT vanilla and, when the weights hold one and a budget is known, shortcut, a grid row "
                        "each; DiMOO vanilla)")
    p.add_argument("--steps", type=int, help="number of steps N (default 15 MaskGIT, 64 DiMOO)")
    p.add_argument("--budget", type=int, help="full (base-model) steps B in shortcut/reuse mode, 2..N "
                                             "(default: the weights' recommended budget, if any)")
    p.add_argument("--cfg", type=float, help="classifier-free guidance weight (default 2.8 MaskGIT, 4.0 DiMOO)")
    p.add_argument("--seed", type=int, default=1,
                   help="random seed (default 1); image i of the run draws its noise from the key (seed, i)")
    p.add_argument("--batch-size", type=int, help="images per compiled batch (default: all at once)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                   help="compute dtype (auto: bfloat16 on GPU/TPU, float32 on CPU, where it is faster)")
    p.add_argument("--attention", default="auto", choices=["auto", "cudnn", "xla", "exact"],
                   help="attention kernel: cudnn (fused flash attention, GPU), xla, exact (float32 softmax); "
                        "auto = cudnn on GPU in bfloat16, exact elsewhere")
    p.add_argument("--out", default="samples.png", help="PNG grid to write")
    p.add_argument("--save-each", action="store_true", help="also write one PNG per image")
    groups = {maskgit.FAMILY: maskgit.add_sample_args(p), dimoo.FAMILY: dimoo.add_sample_args(p)}
    args = p.parse_args(argv)
    args.family_options = {family: given_options(args, group) for family, group in groups.items()}
    if args.batch_size is not None and args.batch_size < 1:
        p.error(f"--batch-size must be >= 1, got {args.batch_size}")
    import jax

    from migm_jax.models.layers import attention_for

    if args.dtype == "auto":
        args.dtype = "float32" if jax.default_backend() == "cpu" else "bfloat16"
    args.attention = attention_for(args.attention, args.dtype, jax.default_backend())  # None: the exact path
    return args


def given_options(args: argparse.Namespace, group: argparse._ArgumentGroup) -> list[str]:
    """Options of `group` whose value differs from their default (i.e. set on the command line)."""
    return [a.option_strings[0] for a in group._group_actions if getattr(args, a.dest) != a.default]


def check_family_options(args: argparse.Namespace, family: str) -> None:
    """Options of the other model family would be ignored silently: refuse them."""
    for other, given in args.family_options.items():
        if other != family and given:
            raise ValueError(f"{', '.join(given)} {'is an option' if len(given) == 1 else 'are options'} of {other} "
                             f"models, but these weights are {family}; drop {'it' if len(given) == 1 else 'them'}")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.demo and args.weights:
            raise ValueError("--demo (a random model) and --weights exclude each other; give one of them")
        if not args.demo and not args.weights:
            from migm_jax.assets import DEMO_MASKGIT

            args.weights = DEMO_MASKGIT
        if args.mode:
            check_budget(args.mode, args.steps, args.budget)  # known from the arguments: before touching any file
        check_sample_args(args)
        family = maskgit.FAMILY if args.demo else read_config(args.weights)[0]
        if family == dimoo.FAMILY and args.mode is None:
            args.mode = "vanilla"
        runners = {maskgit.FAMILY: maskgit.run_sample, dimoo.FAMILY: dimoo.run_sample}
        if family not in runners:
            raise ValueError(f"unknown model family {family!r} in {args.weights}/config.json")
        check_family_options(args, family)
        runners[family](args)
    except (ValueError, OSError) as e:  # CheckpointError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
