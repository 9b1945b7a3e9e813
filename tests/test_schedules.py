"""Schedules and refresh plans equal the original's (fixture schedules.npz)."""

import numpy as np
import pytest

from conftest import load_npz
from migm_jax.sampling.schedules import (CHEAP, FULL, maskgit_schedule, maskgit_train_mask_ratios, refresh_plan,
                                         step_kinds)

Z = load_npz("schedules.npz")


@pytest.mark.parametrize("key", sorted(k for k in Z if k.startswith("maskgit_adap_sche")))
def test_maskgit_schedule(key):
    _, mode, steps, grid = key.split("__")
    np.testing.assert_array_equal(maskgit_schedule(int(steps[4:]), mode, int(grid[4:])), Z[key])


@pytest.mark.parametrize("steps", [15, 32])
def test_train_mask_ratios(steps):
    np.testing.assert_array_equal(maskgit_train_mask_ratios(steps), Z[f"maskgit_get_mask_ratio__{steps}"])


@pytest.mark.parametrize("key", sorted(k for k in Z if k.startswith("refresh_steps")))
def test_refresh_plan(key):
    _, n, b, _ = key.split("__")
    np.testing.assert_array_equal(refresh_plan(int(n[1:]), int(b[1:])), Z[key])


def test_spec_tables():
    np.testing.assert_array_equal(maskgit_schedule(15), [1, 26, 38, 46, 54, 61, 67, 73, 79, 84, 89, 94, 99, 104, 109])
    assert np.flatnonzero(refresh_plan(15, 10)).tolist() == [0, 2, 3, 4, 6, 8, 9, 10, 12, 14]  # half-to-even


def test_step_kinds_and_errors():
    assert (step_kinds("vanilla", 8, None) == FULL).all()
    assert step_kinds("reuse", 8, 4).tolist() == [FULL, CHEAP] * 4
    assert (step_kinds("shortcut", 6, 6) == FULL).all()
    with pytest.raises(ValueError, match="budget must be in 2..steps"):
        refresh_plan(8, 9)
    with pytest.raises(ValueError, match="budget must be in 2..steps"):
        refresh_plan(8, 1)
    with pytest.raises(ValueError, match="unknown schedule"):
        maskgit_schedule(8, "nope")
    with pytest.raises(ValueError, match="cannot fill 16x16 tokens"):
        maskgit_schedule(200, "arccos", 16)
