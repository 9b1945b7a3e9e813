"""Timing and reporting shared by the benchmark scripts."""

from __future__ import annotations

import json
import time

import jax


def timed(fn, *args, repeats: int) -> tuple[float, float]:
    """(compile seconds, mean seconds per call after one warm-up call) of jit(fn)(*args)."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(*args))
    t0 = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(compiled(*args))
    return compile_s, (time.perf_counter() - t0) / repeats


def report(result: dict, out: str | None) -> None:
    """Prints the result as JSON and writes it to `out` if given."""
    if out:
        with open(out, "w") as f:
            json.dump(result, f, indent=2)
    print(json.dumps(result))
