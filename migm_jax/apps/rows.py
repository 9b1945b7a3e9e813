"""What sample.py does the same for both model families: one row of images per sampler configuration,
drawn in compiled batches (compile and sampling timed apart, Ctrl-C honoured at once), then one PNG: a
plain grid for one row, a labelled grid (a name per row and per column) for several."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

import jax
import numpy as np
from tqdm import tqdm

from migm_jax.images import save_images, save_labelled_grid
from migm_jax.memory import HINT, check_fits
from migm_jax.sampling.noise import image_keys
from migm_jax.sampling.schedules import BUDGET_MODES
from migm_jax.weights import first_line, out_of_memory


def describe(sampling) -> str:
    """'vanilla N=16' / 'shortcut N=16 B=6': how a sampler row is named in output and grids (any family's
    settings with mode, steps and budget)."""
    return f"{sampling.mode} N={sampling.steps}" + (f" B={sampling.budget}" if sampling.budget else "")


def padded_rows(start: int, size: int, n: int) -> np.ndarray:
    """Indices start .. start+size-1 of n conditions, the ones past the end repeating the last (size,)."""
    return np.minimum(np.arange(start, start + size), n - 1)


def interruptible(fn: Callable[..., Any], *args) -> Any:
    """fn(*args) run in a daemon thread while this thread waits: a blocking device call holds the thread
    that runs it until it returns, so Ctrl-C raises KeyboardInterrupt here at once instead (the abandoned
    call runs on until the process exits). fn's exception is raised here."""
    result: dict[str, Any] = {}

    def target():
        try:
            result["value"] = fn(*args)
        except BaseException as e:  # handed to the waiting thread
            result["error"] = e

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.1)
    if "error" in result:
        raise result["error"]
    return result["value"]


def compile_sampler(fn, params: Any, batch: Any, batch_size: int, desc: str) -> tuple[Any, float]:
    """(the jitted sampler fn(params, batch, keys) compiled for `batch` (`lower().compile()`), seconds it took);
    ValueError (one line) when the program needs more memory than the device has (`check_fits`)."""
    t0 = time.perf_counter()
    compiled = fn.lower(params, batch, image_keys(jax.random.PRNGKey(0), 0, batch_size)).compile()
    seconds = time.perf_counter() - t0
    check_fits(compiled, f"sampling {desc} at batch {batch_size}")
    return compiled, seconds


def sample_batches(compiled, params: Any, batch_of: Callable[[np.ndarray], Any], n: int, batch_size: int, seed: int,
                   desc: str, done: Callable[[], Any] = lambda: None) -> tuple[list[dict], list[float]]:
    """The outputs of `compiled` (from `compile_sampler`) for conditions 0..n-1, one call per batch of
    `batch_size` (`padded_rows`, so the last batch's rows past n repeat the last condition), image i drawn
    from fold_in(PRNGKey(seed), i); `done()` after each batch. Returns (each batch's output, seconds of each
    batch); a device out-of-memory error is a one-line ValueError."""
    key = jax.random.PRNGKey(seed)
    outputs, times = [], []
    for start in range(0, n, batch_size):
        batch = batch_of(padded_rows(start, batch_size, n))
        t0 = time.perf_counter()
        try:
            out = jax.block_until_ready(compiled(params, batch, image_keys(key, start, batch_size)))
        except Exception as e:  # noqa: BLE001  the device's own out-of-memory error: one line, not a traceback
            if not out_of_memory(e):
                raise
            raise ValueError(f"sampling {desc} at batch {batch_size} ran out of device memory ({first_line(e)}); "
                             f"{HINT}") from None
        times.append(time.perf_counter() - t0)
        outputs.append(out)
        done()
    return outputs, times


def generate(fn, params: Any, batch_of: Callable[[np.ndarray], Any], n: int, batch_size: int, seed: int,
             desc: str) -> tuple[np.ndarray, float, list[float]]:
    """Images of conditions 0..n-1 from the jitted sampler fn(params, batch, keys) -> {'images': (b, H, W, 3)}.

    batch_of(rows) -> the batch of the conditions `rows` (batch_size,), a `padded_rows` slice; image i
    draws from fold_in(PRNGKey(seed), i). Compiled once (`compile_sampler`, timed apart), then one call
    per batch (`sample_batches`), under a progress bar that is cleared when done or interrupted
    (`interruptible`). Returns (images (n, H, W, 3), compile seconds, seconds of each batch)."""
    bar = tqdm(total=len(range(0, n, batch_size)), desc=f"{desc}: compiling", unit="batch", leave=False)

    def run():
        compiled, compile_s = compile_sampler(fn, params, batch_of(padded_rows(0, batch_size, n)), batch_size, desc)
        bar.set_description(desc)
        bar.reset()  # the rate and ETA count sampling only
        outputs, times = sample_batches(compiled, params, batch_of, n, batch_size, seed, desc, bar.update)
        return np.concatenate([np.asarray(out["images"]) for out in outputs])[:n], compile_s, times

    try:
        return interruptible(run)
    finally:
        bar.close()


def timing_line(sampling, n: int, compile_s: float, times: list[float]) -> str:
    """'shortcut N=16 B=8 (8 base-model steps): compile 2.10 s, sampling 0.512 s for 10 images (3 batches,
    0.0512 s per image)': the time per image of the n images asked for (the padding rows of a last partial
    batch cost time but are no image)."""
    full, total = sampling.budget or sampling.steps, float(np.sum(times))
    return (f"{describe(sampling)} ({full} base-model steps): compile {compile_s:.2f} s, sampling {total:.3f} s for "
            f"{n} images ({len(times)} batches, {total / n:.3g} s per image)")


def save_rows(rows: list[np.ndarray], row_names: list[str], column_names: list[str], out: str,
              save_each: bool) -> list[str]:
    """Writes one row of (n, H, W, 3) uint8 images as a plain grid, several as a labelled grid (row and
    column names); returns the written paths (atomically: all or none)."""
    if len(rows) == 1:
        return save_images(rows[0], out, save_each)
    return save_labelled_grid(rows, row_names, column_names, out, save_each)


def chosen_budget(mode: str, given: Optional[int], recommended: Optional[int], steps: int) -> Optional[int]:
    """The budget B of a shortcut / reuse row: --budget if given, else the weights' recommended one
    (ValueError, one line, when that exceeds the steps asked for); None for the other modes."""
    if mode not in BUDGET_MODES:
        return None
    if given is None and recommended is not None and recommended > steps:
        raise ValueError(f"the weights' recommended budget {recommended} exceeds --steps {steps}; give --budget B "
                         f"(2..{steps})")
    return given if given is not None else recommended


def default_note(shown: Optional[dict], dest: str, otherwise) -> str:
    """How --help states an option's default: 'default 16' when the weights at hand are known (`shown`:
    their family's `defaults(configs)`), else 'default: the weights' recommendation, else <otherwise>'."""
    if shown is not None:
        return "default: none" if shown[dest] is None else f"default {shown[dest]}"
    return f"default: the weights' recommendation, else {otherwise}"
