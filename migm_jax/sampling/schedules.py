"""Host-side (numpy) schedules: how many tokens each step fixes, which steps run the base model.

Everything here is static per sampler configuration and computed once before compilation, with the
original's float32 arithmetic and round-half-to-even rules.
"""

from __future__ import annotations

import numpy as np

MASKGIT_SCHEDULES = ("root", "linear", "square", "cosine", "arccos")
FULL, CHEAP = 0, 1  # step kinds: run the base model / run the cheap substitute (shortcut, reuse, cache)


def maskgit_schedule(steps: int, mode: str = "arccos", grid: int = 32) -> np.ndarray:
    """Tokens unmasked at each step (int64, length `steps`, sums to grid^2)."""
    if mode not in MASKGIT_SCHEDULES:
        raise ValueError(f"unknown schedule {mode!r}; choose one of {', '.join(MASKGIT_SCHEDULES)}")
    r = np.linspace(1, 0, steps, dtype=np.float32)
    v = {
        "root": lambda: np.float32(1) - np.sqrt(r),
        "linear": lambda: np.float32(1) - r,
        "square": lambda: np.float32(1) - r * r,
        "cosine": lambda: np.cos(r * np.float32(np.pi / 2)),
        "arccos": lambda: np.arccos(r) / np.float32(np.pi / 2),
    }[mode]().astype(np.float32)
    total = grid * grid
    sche = np.round(v / v.sum(dtype=np.float32) * np.float32(total)).astype(np.int64)
    sche[sche == 0] = 1
    sche[-1] += total - sche.sum()
    return sche


def maskgit_train_mask_ratios(total_steps: int = 15) -> np.ndarray:
    """Fraction still masked after steps 0..N-2 of the arccos schedule on 32x32 (float32, length N-1)."""
    sche = maskgit_schedule(total_steps, "arccos", 32).astype(np.float32) / np.float32(1024)
    return (np.float32(1) - np.cumsum(sche, dtype=np.float32)[:-1]).astype(np.float32)


def refresh_plan(steps: int, budget: int) -> np.ndarray:
    """Which of `steps` steps run the base model given `budget` full steps (bool, length `steps`).

    Step 0 is always full, then step max(previous + 1, round(steps * k / budget)) for k = 1..budget-1
    with Python's round-half-to-even.
    """
    if not 2 <= budget <= steps:
        raise ValueError(f"budget must be in 2..steps ({steps}), got {budget}")
    plan = np.zeros(steps, bool)
    plan[0] = True
    prev = 0
    for k in range(1, budget):
        prev = max(prev + 1, round(steps * (k / budget)))
        plan[prev] = True
    return plan


def step_kinds(mode: str, steps: int, budget: int | None) -> np.ndarray:
    """Per-step kind (FULL / CHEAP) for a sampling mode.

    vanilla: all FULL; shortcut and reuse: the refresh plan of `budget`.
    """
    if mode == "vanilla":
        return np.full(steps, FULL, np.int32)
    if mode in ("shortcut", "reuse"):
        if budget is None:
            raise ValueError(f"mode {mode!r} needs a budget (number of full steps)")
        return np.where(refresh_plan(steps, budget), FULL, CHEAP).astype(np.int32)
    raise ValueError(f"unknown mode {mode!r}; choose vanilla, shortcut or reuse")
