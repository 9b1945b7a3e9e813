"""Checks of sample.py's arguments that need no weights: run before any file is read, so a typo
costs no loading, compiling or sampling."""

from __future__ import annotations

import argparse
import math

from migm_jax.files import check_output_file


def check_sample_args(args: argparse.Namespace) -> None:
    """ValueError / OSError (one line) for settings no model can use and for an unusable --out."""
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be a positive number of steps, got {args.steps}")
    if args.cfg is not None and not math.isfinite(args.cfg):
        raise ValueError(f"--cfg must be a finite number, got {args.cfg}")
    for flag in ("fsdp", "tensor"):
        value = getattr(args, flag, 1)
        if value is not None and value < 1:
            raise ValueError(f"--{flag} must be a number of devices >= 1, got {value}")
    check_output_file(args.out)
