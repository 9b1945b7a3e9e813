"""Checks of sample.py's arguments that need no weights: run before any file is read, so a typo
costs no loading, compiling or sampling."""

from __future__ import annotations

import argparse
import math

from migm_jax.files import check_output_file

MAX_SEED = 2**32 - 1  # jax.random.PRNGKey keeps the low 32 bits: larger seeds would repeat smaller ones


def check_sample_args(args: argparse.Namespace) -> None:
    """ValueError / OSError (one line) for settings no model can use and for an unusable --out."""
    if args.steps is not None and args.steps < 2:
        raise ValueError(f"--steps must be >= 2, got {args.steps}")
    if not 0 <= args.seed <= MAX_SEED:
        raise ValueError(f"--seed must be in 0..{MAX_SEED} (JAX random keys hold 32 bits), got {args.seed}")
    if args.cfg is not None and not math.isfinite(args.cfg):
        raise ValueError(f"--cfg must be a finite number, got {args.cfg}")
    for flag in ("fsdp", "tensor"):
        value = getattr(args, flag, 1)
        if value is not None and value < 1:
            raise ValueError(f"--{flag} must be a number of devices >= 1, got {value}")
    check_matmul(getattr(args, "matmul", "bf16"), getattr(args, "force_fp8", False))
    check_output_file(args.out)


def check_matmul(matmul: str, force_fp8: bool) -> None:
    """ValueError (one line) for --matmul fp8 where it would only be emulated, unless --force-fp8."""
    if matmul == "fp8" and not force_fp8:
        import jax

        from migm_jax.models.fp8 import runs_natively

        if not runs_natively():
            d = jax.devices()[0]
            here = f"GPU ({d.device_kind})" if d.platform == "gpu" else f"{d.platform} backend"
            raise ValueError(f"--matmul fp8 needs FP8 tensor cores (an NVIDIA GPU of compute capability >= 8.9: "
                             f"Ada, Hopper or later); on this {here} it runs emulated, slower than bf16: use "
                             "--matmul bf16, or add --force-fp8 to run it emulated anyway")
