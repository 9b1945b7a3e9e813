"""The interactive page's comparison, for either model family: one condition (a prompt or a class) and the
same noise drawn by vanilla sampling (N base-model steps) and by an accelerated sampler (B of the N steps on
the base model, the others on the shortcut or reused features; B steps in all; ML-Cache), each timed.

A `Drawer` is one weights directory loaded once (migm_jax.apps.drawers: one per family); it keeps the compiled
sampler of each configuration, so a repeated request only samples. Every setting of a `Request` is checked
before anything is compiled or sampled (ValueError, one line naming the field and what it accepts).
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Any, Callable, Optional

import jax
import numpy as np

from migm_jax.apps import rows
from migm_jax.apps.checks import MAX_SEED
from migm_jax.sampling.schedules import FULL

BUDGET_MODES = ("shortcut", "reuse", "fewer steps")  # the page's modes that spend a budget B of base-model steps
MODE_NOTES = {
    "shortcut": "B of the N steps run the base model, the others its shortcut",
    "reuse": "B of the N steps run the base model, the others reuse its last feature",
    "fewer steps": "vanilla sampling with B steps",
    "cache": "ML-Cache: full steps on its refresh plan, partial recomputes between (B is not used)",
}
MAX_BATCH = 16
KEPT_PROGRAMS = 16  # compiled samplers a Drawer keeps (the least recently used goes first)


@dataclasses.dataclass(frozen=True)
class Request:
    """The page's fields as typed (numbers may come as float, str or None; checked by `compare`).
    condition: a prompt (text-to-image) or a class id / name (class-conditional); height and width: the
    image size in pixels where the family takes one (text-to-image)."""

    condition: Any
    steps: Any
    budget: Any
    mode: Any
    cfg: Any
    seed: Any
    batch: Any
    height: Any = None
    width: Any = None


@dataclasses.dataclass(frozen=True)
class Side:
    """One column of the comparison: `batch` images (b, H, W, 3) uint8, image 0's unmasking (masked (N, cells)
    bool: the cells still masked after each step), the kind of each step (N,) (FULL: the base model), the
    sampling seconds and the compile seconds (None: a kept program)."""

    name: str
    images: np.ndarray
    masked: np.ndarray
    kinds: np.ndarray
    seconds: float
    compile_seconds: Optional[float]

    @property
    def full_steps(self) -> int:
        return int(np.sum(self.kinds == FULL))


def whole_number(value: Any, name: str, low: int, high: Optional[int] = None) -> int:
    """`value` as an int in low..high (high None: no upper bound); ValueError (one line) naming the field."""
    where = f"in {low}..{high}" if high is not None else f">= {low}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number == int(number) and low <= number <= (math.inf if high is None else high)):
        raise ValueError(f"{name} must be a whole number {where}, got {value!r}")
    return int(number)


def guidance(value: Any) -> float:
    """The cfg field as a finite float >= 0 (ValueError, one line)."""
    try:
        cfg = float(value)
    except (TypeError, ValueError):
        cfg = math.nan
    if not (math.isfinite(cfg) and cfg >= 0):
        raise ValueError(f"cfg must be a number >= 0 (0: no guidance), got {value!r}")
    return cfg


class Drawer:
    """A weights directory loaded for the page. Subclasses set `family`, `task` ('text to image' with a prompt
    and an image size, 'class to image' with a class), `weights`, `configs`, `params`,
    `modes` (the accelerated modes these weights can run, `MODE_NOTES` keys), `defaults` (the fields' initial
    values: steps, budget, cfg, condition[, height, width]) and implement the family's part below."""

    family: str
    task: str
    weights: str
    configs: dict
    params: Any
    modes: tuple[str, ...]
    defaults: dict

    def __init__(self):
        self._programs = collections.OrderedDict()  # (settings, batch, condition shapes) -> compiled sampler

    def sampling(self, mode: str, given: dict):
        """Validated sampler settings of `mode` (a sampler mode) with `given` (sample.py's option dests)."""
        raise NotImplementedError

    def prepare(self, samplings: list, request: Request) -> Any:
        """The one-row condition batch of `request` (its batch of 1), checked with `samplings` against the
        models (ValueError, one line); nothing is compiled."""
        raise NotImplementedError

    def sampler(self, sampling):
        """The jitted sampler fn(params, batch, keys) of `sampling` (the family's `build_sampler`)."""
        raise NotImplementedError

    def images(self, out: dict) -> np.ndarray:
        """The sampler output's images as (b, H, W, 3) uint8."""
        raise NotImplementedError

    def kinds(self, sampling) -> np.ndarray:
        """(N,) FULL / CHEAP per step of `sampling`."""
        raise NotImplementedError

    def draw(self, sampling, one: Any, batch: int, seed: int, note: Callable[[str], Any] = lambda text: None) -> Side:
        """`batch` images of the condition `one` (a one-row batch), image i from fold_in(PRNGKey(seed), i),
        with the compiled program kept for this configuration (compiled first where there is none);
        note(text) says what runs now."""
        desc = rows.describe(sampling)
        same = lambda idx: jax.tree_util.tree_map(lambda a: np.asarray(a)[np.zeros(len(idx), int)], one)
        leaves = jax.tree_util.tree_leaves(one)
        key = (sampling, batch, jax.tree_util.tree_structure(one), tuple((a.shape, str(a.dtype)) for a in leaves))
        programs, compile_s = self._programs, None
        if key in programs:
            programs.move_to_end(key)
        else:
            note(f"compiling {desc} (first use of this configuration)")
            programs[key], compile_s = rows.compile_sampler(self.sampler(sampling), self.params,
                                                            same(np.arange(batch)), batch, desc)
            while len(programs) > KEPT_PROGRAMS:
                programs.popitem(last=False)
        note(f"sampling {desc}")
        outputs, times = rows.sample_batches(programs[key], self.params, same, batch, batch, seed, desc)
        out = outputs[0]
        return Side(desc, self.images(out)[:batch], np.asarray(out["trace"]["mask"])[:, 0],
                    np.asarray(self.kinds(sampling)), float(np.sum(times)), compile_s)


def samplings(drawer: Drawer, request: Request) -> tuple[Any, Any]:
    """(vanilla sampler settings, accelerated sampler settings) of `request`; ValueError (one line) for a
    field the models cannot take."""
    steps = whole_number(request.steps, "steps N", 2)
    if request.mode not in drawer.modes:
        raise ValueError(f"mode must be one of {', '.join(drawer.modes)} for these weights, got {request.mode!r}")
    given = {"steps": steps, "cfg": guidance(request.cfg)}
    vanilla = drawer.sampling("vanilla", given)
    if request.mode not in BUDGET_MODES:
        return vanilla, drawer.sampling(request.mode, given)
    budget = whole_number(request.budget, f"budget B (base-model steps of the N = {steps})", 2, steps)
    if request.mode == "fewer steps":
        return vanilla, drawer.sampling("vanilla", dict(given, steps=budget))
    return vanilla, drawer.sampling(request.mode, dict(given, budget=budget))


def compare(drawer: Drawer, request: Request, note: Callable[[str], Any] = lambda text: None) -> tuple[Side, Side]:
    """The vanilla and the accelerated `Side` of `request`, drawn with the same seed; every field is checked
    (ValueError, one line) before anything is compiled."""
    pair = samplings(drawer, request)
    batch = whole_number(request.batch, "batch", 1, MAX_BATCH)
    seed = whole_number(request.seed, "seed", 0, MAX_SEED)
    one = drawer.prepare(list(pair), request)
    return tuple(drawer.draw(sampling, one, batch, seed, note) for sampling in pair)
