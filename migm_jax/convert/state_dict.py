"""Strict, name-by-name conversion of a flat PyTorch state dict into a Flax params tree.

`StateDict` hands out tensors by key and remembers which ones were used and where each handed-out
array came from; `finish()` fails on any key the mapping did not consume. `check_shapes` compares a
converted tree with the shapes the Flax module expects and, given `StateDict.origin_of`, names the
checkpoint key and stored shape behind each misfit. Both report every offending name in one error,
so a wrong checkpoint is diagnosed in one run.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import jax
import numpy as np


class CheckpointError(ValueError):
    """A checkpoint does not match the model it is converted for."""


Origin = tuple[str, tuple[int, ...]]  # (checkpoint key, stored shape)


def _is_float(dtype) -> bool:
    import jax.numpy as jnp  # knows bfloat16

    return bool(jnp.issubdtype(dtype, jnp.inexact))


class StateDict:
    """A flat `{name: array}` mapping with consumption tracking and layout helpers.

    Linear weights (out, in) become Dense kernels (in, out); Conv2d weights (O, I, kh, kw) become
    NHWC conv kernels (kh, kw, I, O). Every array handed out is recorded with its checkpoint key and
    stored shape, for `origin_of`.
    """

    def __init__(self, tensors: Mapping[str, np.ndarray], source: str, ignore_prefixes: tuple[str, ...] = ()):
        self.tensors = {k: v for k, v in tensors.items() if not k.startswith(ignore_prefixes)}
        self.source = source
        self.used: set[str] = set()
        self.missing: list[str] = []
        self.nonfinite: list[str] = []
        self._origins: dict[int, tuple[np.ndarray, str, tuple[int, ...]]] = {}

    def get(self, key: str, layout: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> np.ndarray:
        """The tensor stored under `key`, mapped through `layout` (e.g. a transpose) if given."""
        if key not in self.tensors:
            self.missing.append(key)
            return np.zeros((0,), np.float32)
        self.used.add(key)
        stored = np.asarray(self.tensors[key])
        if _is_float(stored.dtype) and not np.isfinite(stored).all():
            self.nonfinite.append(key)
        return self._record(stored if layout is None else layout(stored), key, stored.shape)

    def _record(self, array: np.ndarray, key: str, stored_shape: tuple[int, ...]) -> np.ndarray:
        # The record holds `array` itself, so its id() cannot be reused by another object meanwhile.
        self._origins[id(array)] = (array, key, tuple(stored_shape))
        return array

    def origin_of(self, array: Any) -> Optional[Origin]:
        """(checkpoint key, stored shape) of an array this StateDict handed out, else None."""
        record = self._origins.get(id(array))
        return None if record is None else record[1:]

    def linear(self, prefix: str, bias: bool = True) -> dict[str, np.ndarray]:
        out = {"kernel": self.get(f"{prefix}.weight", np.transpose)}
        if bias:
            out["bias"] = self.get(f"{prefix}.bias")
        return out

    def norm(self, prefix: str, bias: bool = True) -> dict[str, np.ndarray]:
        out = {"scale": self.get(f"{prefix}.weight")}
        if bias:
            out["bias"] = self.get(f"{prefix}.bias")
        return out

    def conv(self, prefix: str) -> dict[str, np.ndarray]:
        kernel = self.get(f"{prefix}.weight", lambda w: w.transpose(2, 3, 1, 0) if w.ndim == 4 else w)
        return {"kernel": kernel, "bias": self.get(f"{prefix}.bias")}

    def fused_qkv(self, prefix: str) -> dict[str, dict[str, np.ndarray]]:
        """Splits `nn.MultiheadAttention` parameters (rows q|k|v) into q/k/v/out Dense params."""
        w_key, b_key = f"{prefix}.in_proj_weight", f"{prefix}.in_proj_bias"
        w, b = self.get(w_key), self.get(b_key)
        d = w.shape[0] // 3
        parts = {name: {"kernel": self._record(w[i * d:(i + 1) * d].T, w_key, w.shape),
                        "bias": self._record(b[i * d:(i + 1) * d], b_key, b.shape)}
                 for i, name in enumerate(("q", "k", "v"))}
        parts["out"] = self.linear(f"{prefix}.out_proj")
        return parts

    def finish(self) -> None:
        """Raises CheckpointError naming every missing and every unused key, and every tensor holding NaN or Inf."""
        if self.nonfinite:
            raise CheckpointError(f"{self.source}: {len(self.nonfinite)} tensor(s) hold NaN or infinite values: "
                                  f"{', '.join(self.nonfinite[:10])}; the checkpoint is damaged or diverged")
        unexpected = sorted(set(self.tensors) - self.used)
        if self.missing or unexpected:
            lines = [f"{self.source}: checkpoint does not match the model"]
            if self.missing:
                lines.append(f"missing keys ({len(self.missing)}): {', '.join(self.missing[:20])}")
            if unexpected:
                lines.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:20])}")
            lines.append("fix: pass the checkpoint this model was built for (and its matching config)")
            raise CheckpointError("; ".join(lines))


def check_shapes(params: Any, expected: Any, source: str,
                 origins: Optional[Callable[[Any], Optional[Origin]]] = None) -> None:
    """Raises CheckpointError if `params` and `expected` (e.g. from jax.eval_shape) differ in tree or shapes.

    Paths are Flax param paths in Flax layout; `origins` (e.g. `StateDict.origin_of`) maps a leaf of
    `params` to its (checkpoint key, stored shape), which a shape mismatch then names as well.
    """
    got = dict(jax.tree_util.tree_flatten_with_path(params)[0])
    want = dict(jax.tree_util.tree_flatten_with_path(expected)[0])
    fmt = jax.tree_util.keystr

    def misfit(path) -> str:
        line = f"{fmt(path)}: shape {tuple(np.shape(got[path]))} != expected {tuple(want[path].shape)}"
        origin = origins(got[path]) if origins else None
        return line if origin is None else f"{line} (checkpoint key {origin[0]}, stored shape {origin[1]})"

    problems = [f"{fmt(p)}: missing" for p in want if p not in got]
    problems += [f"{fmt(p)}: unexpected" for p in got if p not in want]
    problems += [misfit(p) for p in want if p in got and tuple(np.shape(got[p])) != tuple(want[p].shape)]
    if problems:
        raise CheckpointError(f"{source}: converted params do not fit the model: " + "; ".join(problems[:20]))


def count_indexed(tensors: Mapping[str, Any], prefix: str) -> int:
    """Number of distinct indices i among keys `<prefix>.<i>.*` (e.g. layers of a stack)."""
    n = prefix.count(".") + 1
    return len({k.split(".")[n] for k in tensors if k.startswith(prefix + ".")})


def shortcut_widths(tensors: Mapping[str, Any], norm_key: str, family: str) -> tuple[int, int]:
    """(bottleneck width, feature width) of a shortcut state dict: from `proj_in.weight` (out, in), or from
    the first block's norm `norm_key` when there is no bottleneck. CheckpointError if neither is there."""
    if "proj_in.weight" in tensors:
        width, features = tensors["proj_in.weight"].shape
        return int(width), int(features)
    if norm_key in tensors:
        return (int(tensors[norm_key].shape[0]),) * 2
    raise CheckpointError(f"shortcut checkpoint lacks proj_in / blocks.0 keys; is this a {family} shortcut .pth?")


def shortcut_projections(sd: StateDict, bottleneck: bool, embed_t: bool) -> dict[str, Any]:
    """The params both shortcut families name alike: the bottleneck projections (proj_in, proj_out,
    new_token_proj_in) when there is a bottleneck, the timestep embedder and adaLN_modulation with embed_t."""
    p: dict[str, Any] = {}
    if bottleneck:
        p.update(proj_in=sd.linear("proj_in"), proj_out=sd.linear("proj_out"),
                 new_token_proj_in=sd.linear("new_token_proj_in"))
    if embed_t:
        p["time_embedder"] = {"mlp_0": sd.linear("time_embedder.mlp.0"), "mlp_2": sd.linear("time_embedder.mlp.2")}
        p["adaLN_modulation"] = sd.linear("adaLN_modulation")
    return p
