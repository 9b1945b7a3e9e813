"""Timing and reporting shared by the benchmark scripts."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any, NamedTuple, Optional

import jax

from migm_jax.memory import program_bytes


FP8_GEMM = "__cublas$lt$matmul$f8"  # XLA's custom-call target of a cuBLASLt FP8 GEMM (GPU)


class Timing(NamedTuple):
    compile_s: float
    seconds: float             # mean per call after one warm-up call
    program_gib: Optional[float]  # device memory the compiled program needs: arguments + outputs + scratch
    fp8_gemms: int             # FP8 GEMM calls in the optimised program (0 wherever XLA runs no FP8 GEMM)
    compiled: Any              # the program timed, for callers that run it again (e.g. under the profiler)
    output: Any                # what the last timed call returned


def program_gib(compiled) -> Optional[float]:
    """`migm_jax.memory.program_bytes` in GiB: the device memory the compiled call needs."""
    used = program_bytes(compiled)
    return None if used is None else used / 2**30


def timed(fn, *args, repeats: int) -> Timing:
    """Times jit(fn)(*args); an already jitted fn is compiled as it is (its shardings, compiler options)."""
    t0 = time.perf_counter()
    compiled = (fn if hasattr(fn, "lower") else jax.jit(fn)).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    out = jax.block_until_ready(compiled(*args))
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = jax.block_until_ready(compiled(*args))
    return Timing(compile_s, (time.perf_counter() - t0) / repeats, program_gib(compiled),
                  compiled.as_text().count(FP8_GEMM), compiled, out)


@contextlib.contextmanager
def setup_phase(what: str):
    """Prints `what` before and its wall time after (the caller blocks on its device work inside), so a run
    cut short says where its setup went."""
    print(f"setup: {what} ...", flush=True)
    t0 = time.perf_counter()
    yield
    print(f"setup: {what}: {time.perf_counter() - t0:.1f} s", flush=True)


def write_json(result: dict, out: str) -> None:
    with open(out, "w") as f:
        json.dump(result, f, indent=2)


def report(result: dict, out: str | None) -> None:
    """Prints the result as JSON and writes it to `out` if given."""
    if out:
        write_json(result, out)
    print(json.dumps(result))
