"""Deterministic random weights for an FID Inception state dict, from numpy alone.

Used by the fixture generator (which loads them into the reference packages' own models) and by the
tests (which map them through the loader), so both sides see identical weights without storing 95 MB.
Scales keep activations O(1) through the whole network: He-scaled convolutions and batch norms whose
stored statistics leave the scale about unchanged.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def random_state_dict(shapes: Mapping[str, Sequence[int]], seed: int = 0) -> dict[str, np.ndarray]:
    """{torch key: shape} -> {torch key: float32 array}, drawn in sorted key order from one generator."""
    rng = np.random.default_rng(seed)
    out = {}
    for key in sorted(shapes):
        shape = tuple(int(s) for s in shapes[key])
        kind = key.rsplit(".", 2)[-2:]
        if kind == ["conv", "weight"]:
            value = rng.standard_normal(shape, np.float32) * np.sqrt(2 / np.prod(shape[1:]))
        elif kind == ["bn", "weight"]:
            value = rng.uniform(0.8, 1.2, shape)
        elif kind == ["bn", "bias"] or kind == ["bn", "running_mean"]:
            value = rng.normal(0, 0.1, shape)
        elif kind == ["bn", "running_var"]:
            value = rng.uniform(0.8, 1.25, shape)
        elif key == "fc.weight":
            value = rng.standard_normal(shape, np.float32) / np.sqrt(shape[1])
        elif key == "fc.bias":
            value = rng.normal(0, 0.5, shape)
        else:
            raise KeyError(f"no random rule for state dict key {key}")
        out[key] = np.asarray(value, np.float32)
    return out
