"""Strict, name-by-name conversion of a flat PyTorch state dict into a Flax params tree.

`StateDict` hands out tensors by key and remembers which ones were used; `finish()` fails on any
key the mapping did not consume. `check_shapes` compares a converted tree with the shapes the Flax
module expects. Both report every offending name in one error, so a wrong checkpoint is diagnosed
in one run.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np


class CheckpointError(ValueError):
    """A checkpoint does not match the model it is converted for."""


class StateDict:
    """A flat `{name: array}` mapping with consumption tracking and layout helpers.

    Linear weights (out, in) become Dense kernels (in, out); Conv2d weights (O, I, kh, kw) become
    NHWC conv kernels (kh, kw, I, O).
    """

    def __init__(self, tensors: Mapping[str, np.ndarray], source: str, ignore_prefixes: tuple[str, ...] = ()):
        self.tensors = {k: v for k, v in tensors.items() if not k.startswith(ignore_prefixes)}
        self.source = source
        self.used: set[str] = set()
        self.missing: list[str] = []

    def has(self, key: str) -> bool:
        return key in self.tensors

    def get(self, key: str) -> np.ndarray:
        if key not in self.tensors:
            self.missing.append(key)
            return np.zeros((0,), np.float32)
        self.used.add(key)
        return np.asarray(self.tensors[key])

    def linear(self, prefix: str, bias: bool = True) -> dict[str, np.ndarray]:
        out = {"kernel": self.get(f"{prefix}.weight").T}
        if bias:
            out["bias"] = self.get(f"{prefix}.bias")
        return out

    def norm(self, prefix: str, bias: bool = True) -> dict[str, np.ndarray]:
        out = {"scale": self.get(f"{prefix}.weight")}
        if bias:
            out["bias"] = self.get(f"{prefix}.bias")
        return out

    def conv(self, prefix: str) -> dict[str, np.ndarray]:
        w = self.get(f"{prefix}.weight")
        return {"kernel": w.transpose(2, 3, 1, 0) if w.ndim == 4 else w, "bias": self.get(f"{prefix}.bias")}

    def fused_qkv(self, prefix: str) -> dict[str, dict[str, np.ndarray]]:
        """Splits `nn.MultiheadAttention` parameters (rows q|k|v) into q/k/v/out Dense params."""
        w, b = self.get(f"{prefix}.in_proj_weight"), self.get(f"{prefix}.in_proj_bias")
        d = w.shape[0] // 3
        parts = {name: {"kernel": w[i * d:(i + 1) * d].T, "bias": b[i * d:(i + 1) * d]}
                 for i, name in enumerate(("q", "k", "v"))}
        parts["out"] = self.linear(f"{prefix}.out_proj")
        return parts

    def finish(self) -> None:
        """Raises CheckpointError naming every missing and every unused key."""
        unexpected = sorted(set(self.tensors) - self.used)
        if self.missing or unexpected:
            lines = [f"{self.source}: checkpoint does not match the model"]
            if self.missing:
                lines.append(f"missing keys ({len(self.missing)}): {', '.join(self.missing[:20])}")
            if unexpected:
                lines.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:20])}")
            lines.append("fix: pass the checkpoint this model was built for (and its matching config)")
            raise CheckpointError("; ".join(lines))


def check_shapes(params: Any, expected: Any, source: str) -> None:
    """Raises CheckpointError if `params` and `expected` (e.g. from jax.eval_shape) differ in tree or shapes."""
    got = dict(jax.tree_util.tree_flatten_with_path(params)[0])
    want = dict(jax.tree_util.tree_flatten_with_path(expected)[0])
    fmt = jax.tree_util.keystr
    problems = [f"{fmt(p)}: missing" for p in want if p not in got]
    problems += [f"{fmt(p)}: unexpected" for p in got if p not in want]
    problems += [f"{fmt(p)}: shape {tuple(np.shape(got[p]))} != expected {tuple(want[p].shape)}"
                 for p in want if p in got and tuple(np.shape(got[p])) != tuple(want[p].shape)]
    if problems:
        raise CheckpointError(f"{source}: converted params do not fit the model: " + "; ".join(problems[:20]))


def count_indexed(tensors: Mapping[str, Any], prefix: str) -> int:
    """Number of distinct indices i among keys `<prefix>.<i>.*` (e.g. layers of a stack)."""
    n = prefix.count(".") + 1
    return len({k.split(".")[n] for k in tensors if k.startswith(prefix + ".")})
