#!/usr/bin/env python
r"""Generate images with MaskGIT-Shortcut or Lumina-DiMOO-Shortcut weights converted by convert_weights.py.

  python sample.py        # the embedded text-to-image demo: emoji from their names, vanilla and shortcut -> samples.png
  python sample.py --prompt "twemoji pizza" "noto dog face"     # any prompt in the demo's vocabulary
  python sample.py --list-prompts                               # the prompts the demo was trained on
  python sample.py --demo-model maskgit   # the embedded class-conditional MaskGIT demo (Fashion-MNIST)
  python sample.py --weights W --labels 1 7 282 604 --steps 32 --budget 12 --mode shortcut --out samples.png
  python sample.py --weights W --prompt "A photo of a bench." --height 1024 --width 1024 --steps 64 \
      --budget 14 --mode shortcut --cfg 4 --seed 1 --out bench.png
  python sample.py --demo-model random --out demo.png      # small random MaskGIT (untrained), no weights needed
"""

import argparse
import os
import sys
from typing import Optional

from migm_jax.apps import dimoo, maskgit
from migm_jax.apps.checks import check_sample_args
from migm_jax.apps.rows import default_note
from migm_jax.assets import DEMO_EMOJI, DEMO_MASKGIT
from migm_jax.launch import INTERRUPTED, add_launch_args, error_line, initialize, leave, leave_at_once
from migm_jax.sampling.schedules import check_budget
from migm_jax.weights import read_config

APPS = {maskgit.FAMILY: maskgit, dimoo.FAMILY: dimoo}
DEMOS = {"emoji": DEMO_EMOJI, "maskgit": DEMO_MASKGIT, "random": None}  # --demo-model -> weights (None: random)


def weights_of(weights: Optional[str], demo_model: Optional[str]) -> Optional[str]:
    """The weights dir sample.py draws from: --weights, else the embedded demo `demo_model` (default emoji);
    None for the random model."""
    return weights if weights is not None else DEMOS[demo_model or "emoji"]


def shown_defaults(argv) -> tuple[str, Optional[str], Optional[dict]]:
    """(a note for --help naming the weights whose defaults it shows, their family, their family's
    `defaults` by option dest) for the weights the command line selects; (note, None, None) when their
    config cannot be read (the run reports why)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--weights")
    pre.add_argument("--demo-model")
    known, _ = pre.parse_known_args(argv)
    weights = weights_of(known.weights, known.demo_model if known.demo_model in DEMOS else None)  # the parser reports a bad one
    if weights is None:
        return "Defaults shown: those of the random MaskGIT model (the original's).", maskgit.FAMILY, maskgit.defaults({})
    try:
        family, configs = read_config(weights)
    except (OSError, ValueError):
        return f"Defaults shown: generic ({weights} holds no readable config.json).", None, None
    if family not in APPS:
        return f"Defaults shown: generic ({weights} holds {family!r} weights).", None, None
    return (f"Defaults shown: those of {weights} ({family}); --weights W --help shows W's.", family,
            APPS[family].defaults(configs))


def parse_args(argv=None) -> argparse.Namespace:
    argv = sys.argv[1:] if argv is None else argv
    epilog, shown_family, shown = shown_defaults(argv)
    note = lambda dest, otherwise: default_note(shown, dest, otherwise)
    p = argparse.ArgumentParser(description=__doc__, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", help="directory written by convert_weights.py (or by train.py export); default: "
                                     "the embedded demo chosen by --demo-model")
    p.add_argument("--demo-model", choices=list(DEMOS),
                   help="embedded model to draw without --weights: emoji = text-to-image (Lumina-DiMOO family) trained "
                        "on emoji, drawn from their names (default); maskgit = class-conditional MaskGIT-Shortcut "
                        "trained on Fashion-MNIST; random = a small randomly initialised (untrained) MaskGIT")
    p.add_argument("--mode", choices=["vanilla", "shortcut", "reuse", "cache"],
                   help="vanilla: base model every step; shortcut/reuse: --budget full steps; cache: DiMOO ML-Cache "
                        "(default: vanilla and, when the weights hold a shortcut and a budget is known, shortcut, a "
                        "grid row each with the same noise)")
    p.add_argument("--steps", type=int, help=f"number of steps N ({note('steps', '15 MaskGIT, 64 DiMOO')})")
    p.add_argument("--budget", type=int, help="full (base-model) steps B in shortcut/reuse mode, 2..N "
                                             f"({note('budget', 'none')})")
    p.add_argument("--cfg", type=float, help=f"classifier-free guidance weight ({note('cfg', '2.8 MaskGIT, 4.0 DiMOO')})")
    p.add_argument("--seed", type=int, default=1,
                   help="random seed, 0..2^32-1 (default 1); image i of the run draws its noise from the key (seed, i)")
    p.add_argument("--batch-size", type=int, help="images per compiled batch (default: all at once)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                   help="compute dtype (auto: bfloat16 on GPU/TPU, float32 on CPU, where it is faster)")
    p.add_argument("--attention", default="auto", choices=["auto", "cudnn", "xla", "exact"],
                   help="attention kernel: cudnn (fused flash attention, GPU), xla, exact (float32 softmax); "
                        "auto = cudnn on GPU in bfloat16, exact elsewhere")
    p.add_argument("--out", default="samples.png", help="PNG grid to write")
    p.add_argument("--save-each", action="store_true", help="also write one PNG per image")
    groups = {family: app.add_sample_args(p, shown if family == shown_family else None) for family, app in APPS.items()}
    add_launch_args(p)
    args = p.parse_args(argv)
    args.family_options = {family: given_options(args, group) for family, group in groups.items()}
    if args.batch_size is not None and args.batch_size < 1:
        p.error(f"--batch-size must be >= 1, got {args.batch_size}")
    initialize(args)  # several processes (launch settings): before JAX picks its devices
    import jax

    from migm_jax.models.layers import numerics_for

    args.dtype, args.attention = numerics_for(args.dtype, args.attention, jax.default_backend())  # None: exact attention
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
    try:
        args = parse_args(argv)
        if args.demo_model and args.weights:
            raise ValueError("--demo-model (an embedded model) and --weights exclude each other; give one of them")
        args.weights = weights_of(args.weights, args.demo_model)
        if args.weights == DEMO_EMOJI and not os.path.isdir(DEMO_EMOJI):
            raise FileNotFoundError(f"the embedded text-to-image demo is not installed ({DEMO_EMOJI} is missing); "
                                    "draw the MaskGIT demo with --demo-model maskgit, or give --weights")
        if args.mode and args.budget is not None:
            check_budget(args.mode, args.steps, args.budget)  # known from the arguments: before touching any file
        check_sample_args(args)
        family = maskgit.FAMILY if args.weights is None else read_config(args.weights)[0]
        if family not in APPS:
            raise ValueError(f"unknown model family {family!r} in {args.weights}/config.json")
        check_family_options(args, family)
        if args.list_prompts:
            dimoo.list_prompts(args)
        else:
            APPS[family].run_sample(args)
    except (ValueError, OSError) as e:  # CheckpointError and LaunchError are ValueErrors
        print(f"error: {error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: stopped, nothing written", file=sys.stderr)
        return INTERRUPTED
    return 0


if __name__ == "__main__":
    code = main()
    (leave_at_once if code == INTERRUPTED else leave)(code)
