"""GELU(x W + b) as one GPU kernel: a Pallas (Triton) matmul whose epilogue adds the bias and applies the
exact erf GELU before the single write of the hidden activations. A measured speed lever of the MaskGIT
transformer's MLP (`bench_maskgit_levers.py`, table `mlp`), not used by the models: on an H100 its matmul
runs at about 320 TFLOP/s against cuBLAS' ~720, which loses more than the GELU pass it saves.

XLA runs fc1 as a cuBLAS GEMM that writes its (rows, hidden) bf16 output, then a separate elementwise pass
that reads it back for the GELU and writes it again. Here the accumulator never leaves the chip between the
matmul and the GELU. The arithmetic: bf16 operands, float32 accumulation, bias and exact GELU in float32
(erf from a rational approximation within 4.5e-7), one rounding to the output dtype at the end (XLA rounds
the GEMM output and the bias sum to bf16 first, so the two differ by bf16 rounding).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu


@dataclasses.dataclass(frozen=True)
class Tiling:
    """Block sizes of the kernel (rows, columns, reduction) and Triton's warps / pipeline stages."""

    block_m: int = 128
    block_n: int = 128
    block_k: int = 64
    num_warps: int = 8
    num_stages: int = 3


# erf(x) ~ x P(x^2) / Q(x^2) on x clamped to [-4, 4] (float32 erf is +-1 beyond): the rational form that XLA
# and Eigen long used for float32 erf, max abs error 4.5e-7 against float64 (XLA's erf today: 3.2e-7).
# Pallas' Triton lowering has no erf primitive, so the kernel evaluates this (Horner, highest power first).
_ERF_P = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
          -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
_ERF_Q = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
          -1.42647390514189e-02)


def erf_rational(x: jax.Array) -> jax.Array:
    """float32 erf from elementwise arithmetic only (`_ERF_P` / `_ERF_Q`)."""
    x = jnp.clip(x, -4.0, 4.0)
    x2 = x * x
    p, q = jnp.full_like(x, _ERF_P[0]), jnp.full_like(x, _ERF_Q[0])
    for c in _ERF_P[1:]:
        p = p * x2 + c
    for c in _ERF_Q[1:]:
        q = q * x2 + c
    return x * p / q


def _erf_gelu(y: jax.Array) -> jax.Array:
    return 0.5 * y * (1.0 + erf_rational(y * (1.0 / math.sqrt(2.0))))


def _kernel(x_ref, w_ref, b_ref, o_ref, *, rows: int, tiling: Tiling):
    """One (block_m, block_n) output tile (grid: column block, row block): x_ref (block_m, K), w_ref
    (K, block_n), b_ref (block_n,)."""
    t = tiling
    row_ok = (pl.program_id(1) * t.block_m + jnp.arange(t.block_m)) < rows
    k_total = x_ref.shape[1]

    def step(i, acc):
        ks = pl.ds(i * t.block_k, t.block_k)
        x = plgpu.load(x_ref.at[:, ks], mask=row_ok[:, None], other=0.0)
        return acc + plgpu.dot(x, w_ref[ks, :], allow_tf32=False).astype(jnp.float32)

    acc = jax.lax.fori_loop(0, k_total // t.block_k, step, jnp.zeros((t.block_m, t.block_n), jnp.float32))
    y = _erf_gelu(acc + b_ref[...].astype(jnp.float32)[None, :])
    plgpu.store(o_ref, y.astype(o_ref.dtype), mask=row_ok[:, None])


def check_shapes(x: jax.Array, w: jax.Array, tiling: Tiling) -> None:
    """ValueError (one line) unless x (M, K) @ w (K, N) fits `tiling` (K, N multiples of its blocks)."""
    (_, k), (k2, n) = x.shape, w.shape
    if k != k2:
        raise ValueError(f"dense_gelu: x has {k} columns but w has {k2} rows")
    if k % tiling.block_k or n % tiling.block_n:
        raise ValueError(f"dense_gelu: K={k} and N={n} must be multiples of block_k={tiling.block_k} and "
                         f"block_n={tiling.block_n}; pick a Tiling that divides them")


@functools.partial(jax.jit, static_argnames=("tiling", "interpret"))
def dense_gelu(x: jax.Array, w: jax.Array, b: jax.Array, tiling: Tiling = Tiling(), interpret: bool | None = None) -> jax.Array:
    """GELU(x @ w + b): x (M, K), w (K, N) in the compute dtype, b (N,) any float dtype -> (M, N) in x's dtype.

    M is free (the last row block is masked); K and N must be multiples of the tiling's blocks
    (`check_shapes`). `interpret=True` runs the kernel through Pallas' interpreter (any backend); None: the
    interpreter everywhere but on a GPU (so CPU tests run the kernel's own code).
    """
    check_shapes(x, w, tiling)
    if interpret is None:
        interpret = jax.default_backend() != "gpu"
    (m, k), n, t = x.shape, w.shape[1], tiling
    compiler_params = None
    if not interpret:
        compiler_params = plgpu.CompilerParams(num_warps=t.num_warps, num_stages=t.num_stages)
    return pl.pallas_call(
        functools.partial(_kernel, rows=m, tiling=t),
        out_shape=jax.ShapeDtypeStruct((m, n), x.dtype),
        # column blocks vary fastest: the blocks that run together share one row block of x, which stays in L2
        # while all of w (K x N, a few MB) does too; x is read from memory about once.
        grid=(n // t.block_n, pl.cdiv(m, t.block_m)),
        in_specs=[pl.BlockSpec((t.block_m, k), lambda j, i: (i, 0)),
                  pl.BlockSpec((k, t.block_n), lambda j, i: (0, j)),
                  pl.BlockSpec((t.block_n,), lambda j, i: (j,))],
        out_specs=pl.BlockSpec((t.block_m, t.block_n), lambda j, i: (i, j)),
        compiler_params=compiler_params,
        interpret=interpret,
        name="dense_gelu",
    )(x, w, b)
