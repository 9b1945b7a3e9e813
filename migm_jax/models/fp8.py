"""FP8 (e4m3) matmuls with current scaling, for inference (opt-in: `LLaDA(..., matmul="fp8")`).

A weight is quantised once, at load time (`quantize_llada`), with one scale per output channel and stored
transposed: kernel (in, out) ~= (qkernel * scale[:, None]).T, qkernel (out, in) float8_e4m3fn, scale = amax
over `in` / 448. (out, in) is the K-major order cuBLASLt's FP8 GEMM takes for its second operand; kept as
(in, out), the compiled sampler held a relayouted copy of every FP8 kernel on the side (~6.6 GiB at 8B). An
activation is quantised at every call with one scale per row (token), computed on device from that row's
amax. Both operands of the dot are then unit-scale e4m3 values, so the product factors exactly:

    x @ kernel ~= (sx[:, None] * sw[None, :]) * (qx @ qkernel.T)

The dot is written on the upcast operands with its output in the compute dtype (cuBLASLt accumulates in
float32 and rounds once; a float32 output doubled the bytes the next fusion reads), the form XLA's GPU
compiler rewrites into a cuBLASLt FP8 GEMM on Hopper (`benchmarks/bench_dimoo.py --matmul fp8` counts those calls in the
compiled program); the two scales are applied to its output. There is no delayed scaling (no amax
history): nothing here needs a backward pass.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import flax.linen as nn

FP8 = jnp.float8_e4m3fn
FP8_MAX = float(jnp.finfo(FP8).max)  # 448
# cuBLASLt's FP8 GEMM takes row counts in multiples of 16; XLA pads each GEMM's operand up to one otherwise (a
# copy per GEMM per step), so the DiMOO sampler pads its sequences once (`PromptBatch.with_width_multiple`).
GEMM_ROW_MULTIPLE = 16
FP8_LINEARS = ("q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out")  # per LLaDA block


def runs_natively(device: jax.Device | None = None) -> bool:
    """Whether `device` (default: the first) has FP8 tensor cores, i.e. is an NVIDIA GPU of compute
    capability >= 8.9 (Ada, Hopper and later), where XLA turns these dots into cuBLASLt FP8 GEMMs.
    Elsewhere the same code runs emulated (upcast operands), slower than bf16."""
    d = device or jax.devices()[0]
    try:
        major, minor = (int(x) for x in str(getattr(d, "compute_capability", "")).split("."))
    except ValueError:
        return False
    return d.platform == "gpu" and (major, minor) >= (8, 9)


def _scale(amax: jax.Array) -> jax.Array:
    """float32 scale mapping amax to FP8_MAX (1 where amax is 0, so all-zero rows and channels stay 0)."""
    amax = amax.astype(jnp.float32)
    return jnp.where(amax > 0, amax / FP8_MAX, 1.0)


def quantize_kernel(kernel: jax.Array) -> dict:
    """kernel (in, out) -> {'qkernel': (out, in) float8_e4m3fn, 'scale': (out,) float32}."""
    k = kernel.astype(jnp.float32).T
    scale = _scale(jnp.max(jnp.abs(k), axis=1))
    return {"qkernel": (k / scale[:, None]).astype(FP8), "scale": scale}


def fp8_matmul(x: jax.Array, qkernel: jax.Array, scale: jax.Array, dtype: jnp.dtype) -> jax.Array:
    """x (..., in) @ the kernel that (qkernel (out, in), scale (out,)) quantise -> (..., out) in `dtype`."""
    x32 = x.astype(jnp.float32)
    sx = _scale(jnp.max(jnp.abs(x32), axis=-1, keepdims=True))  # (..., 1), current amax per row
    qx = (x32 / sx).astype(FP8)
    y = jnp.einsum("...i,oi->...o", qx.astype(dtype), qkernel.astype(dtype), preferred_element_type=dtype)
    return (y.astype(jnp.float32) * sx * scale).astype(dtype)


class Fp8Dense(nn.Module):
    """A bias-free Dense on `quantize_kernel` params ('qkernel', 'scale'): (..., in) -> (..., features)."""

    features: int
    dtype: jnp.dtype = jnp.bfloat16

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        qkernel = self.param("qkernel", nn.initializers.zeros, (self.features, x.shape[-1]), FP8)
        scale = self.param("scale", nn.initializers.ones, (self.features,), jnp.float32)
        return fp8_matmul(x, qkernel, scale, jnp.dtype(self.dtype))


_quantize_on_device = jax.jit(quantize_kernel)


def quantize_llada(params: dict) -> dict:
    """LLaDA params (as the converter writes them) -> the same tree with every block's FP8_LINEARS
    {'kernel'} replaced by `quantize_kernel`'s {'qkernel', 'scale'}; embeddings, norms and the head unchanged.

    One jitted call per kernel (compiled once per kernel shape), where the kernel is and with its shards:
    the float32 temporaries (4 bytes a weight) are one kernel's at a time, not all 224 kernels' of the 8B
    model at once."""
    blocks = {name: {k: _quantize_on_device(v["kernel"]) if k in FP8_LINEARS else v for k, v in block.items()}
              for name, block in params["transformer"].items() if name.startswith("blocks_")}
    return {**params, "transformer": {**params["transformer"], **blocks}}
