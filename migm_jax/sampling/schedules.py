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
    if sche[-1] < 1:
        raise ValueError(f"{steps} steps of the {mode} schedule cannot fill {grid}x{grid} tokens (the last step "
                         f"would fix {sche[-1]}); use fewer steps")
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


BUDGET_MODES = ("shortcut", "reuse")  # modes whose full steps are a budget B of the N steps


def check_budget(mode: str, steps: int | None, budget: int | None) -> None:
    """One-line ValueError when `budget` does not fit `mode` and `steps` (None: not known yet)."""
    if mode in BUDGET_MODES:
        if budget is None:
            raise ValueError(f"mode {mode} needs --budget B (base-model steps, 2..steps)")
        if budget < 2 or (steps is not None and budget > steps):
            raise ValueError(f"--budget must be in 2..steps ({steps or 'N'}) for mode {mode}, got {budget}")
    elif budget is not None:
        raise ValueError(f"--budget applies to modes {' and '.join(BUDGET_MODES)}, not {mode}; "
                         f"for fewer base-model steps give --steps {budget} instead")


def step_kinds(mode: str, steps: int, budget: int | None) -> np.ndarray:
    """Per-step kind (FULL / CHEAP) for a sampling mode.

    vanilla: all FULL; shortcut and reuse: the refresh plan of `budget`.
    """
    if mode not in ("vanilla", *BUDGET_MODES):
        raise ValueError(f"unknown mode {mode!r}; choose vanilla, shortcut or reuse")
    check_budget(mode, steps, budget)
    if mode == "vanilla":
        return np.full(steps, FULL, np.int32)
    return np.where(refresh_plan(steps, budget), FULL, CHEAP).astype(np.int32)


def dimoo_cosine_schedule(steps: int) -> np.ndarray:
    """cos(pi/2 * (s+1)/steps) for s = 0..steps-1 (float32), the original's `cosine_schedule`.

    The argument is formed in float32 like the original (fl32(fl32(pi/2) * fl32(t))); the cosine itself is
    the correctly rounded float32 value, which can differ by one ulp from a given libm (PyTorch's CPU and
    CUDA kernels differ from each other too). `dimoo_keep_n` does not depend on that ulp for the tested
    grids (tests/test_schedules.py).
    """
    t = (np.arange(1, steps + 1, dtype=np.float64) / steps).astype(np.float32)
    arg = np.float32(0.5 * np.pi) * t
    return np.cos(arg.astype(np.float64)).astype(np.float32)


def dimoo_keep_n(steps: int, vq_len: int) -> np.ndarray:
    """Cells that stay masked after each step (int64, length `steps`): max(1, floor(vq_len * cos)) in float32,
    0 at the last step. Tokens fixed at step s = keep_n[s-1] - keep_n[s], with keep_n[-1] = vq_len."""
    keep = np.maximum(np.floor(np.float32(vq_len) * dimoo_cosine_schedule(steps)), 1).astype(np.int64)
    keep[-1] = 0
    return keep


def dimoo_mask_ratios(steps: int, vq_len: int) -> np.ndarray:
    """Masked fraction at the start of each step (float32, length `steps`): 1, then keep_n[s-1] / vq_len.

    This is the shortcut's `mask_ratio` input at step s (unknown_cnt / vq_len in the original)."""
    before = np.concatenate([[vq_len], dimoo_keep_n(steps, vq_len)[:-1]])
    return before.astype(np.float32) / np.float32(vq_len)


def cache_refresh_plan(steps: int, warmup_ratio: float = 0.3, refresh_interval: int = 5) -> np.ndarray:
    """ML-Cache full steps (bool, length `steps`): s <= int(steps * warmup_ratio) or (s - warmup) % interval == 0.

    N=64 with the defaults: steps 0..19, 24, 29, ..., 59 (28 full steps)."""
    if refresh_interval < 1:
        raise ValueError(f"refresh_interval must be >= 1, got {refresh_interval}")
    if not 0.0 <= warmup_ratio <= 1.0:
        raise ValueError(f"warmup_ratio must be in [0, 1], got {warmup_ratio}")
    warmup = int(steps * warmup_ratio)
    s = np.arange(steps)
    return (s <= warmup) | ((s - warmup) % refresh_interval == 0)


def dimoo_step_kinds(mode: str, steps: int, budget: int | None = None, warmup_ratio: float = 0.3,
                     refresh_interval: int = 5) -> np.ndarray:
    """Per-step kind for a DiMOO sampling mode: `step_kinds` for vanilla / shortcut / reuse; for 'cache'
    FULL on the ML-Cache refresh steps and CHEAP (partial recompute) elsewhere."""
    if mode == "cache":
        check_budget(mode, steps, budget)
        return np.where(cache_refresh_plan(steps, warmup_ratio, refresh_interval), FULL, CHEAP).astype(np.int32)
    if mode not in ("vanilla", "shortcut", "reuse"):
        raise ValueError(f"unknown mode {mode!r}; choose vanilla, shortcut, reuse or cache")
    return step_kinds(mode, steps, budget)
