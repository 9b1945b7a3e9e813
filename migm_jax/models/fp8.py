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
    """A Dense on `quantize_kernel` params ('qkernel', 'scale'; 'bias' (features,) float32 with use_bias, added
    in `dtype` as nn.Dense does): (..., in) -> (..., features)."""

    features: int
    dtype: jnp.dtype = jnp.bfloat16
    use_bias: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        qkernel = self.param("qkernel", nn.initializers.zeros, (self.features, x.shape[-1]), FP8)
        scale = self.param("scale", nn.initializers.ones, (self.features,), jnp.float32)
        y = fp8_matmul(x, qkernel, scale, jnp.dtype(self.dtype))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32).astype(self.dtype)
        return y


_quantize_on_device = jax.jit(quantize_kernel)


def quantize_blocks(tree: dict, names: tuple[str, ...]) -> dict:
    """A params tree whose `blocks_<i>` entries are the blocks -> the same tree where, inside every block, each
    Dense named in `names` (a dict holding 'kernel', at any depth) has its 'kernel' replaced by
    `quantize_kernel`'s {'qkernel', 'scale'} (a 'bias' is kept); everything outside the blocks unchanged.

    One jitted call per kernel (compiled once per kernel shape), where the kernel is and with its shards:
    the float32 temporaries (4 bytes a weight) are one kernel's at a time, not all of a large model's."""
    def walk(node: dict) -> dict:
        out = {}
        for k, v in node.items():
            if k in names and isinstance(v, dict) and "kernel" in v:
                out[k] = {**{kk: vv for kk, vv in v.items() if kk != "kernel"}, **_quantize_on_device(v["kernel"])}
            else:
                out[k] = walk(v) if isinstance(v, dict) else v
        return out

    return {name: walk(block) if name.startswith("blocks_") else block for name, block in tree.items()}


def quantize_llada(params: dict) -> dict:
    """LLaDA params (as the converter writes them) -> `quantize_blocks` over FP8_LINEARS (embeddings, norms
    and the head unchanged)."""
    return {**params, "transformer": quantize_blocks(params["transformer"], FP8_LINEARS)}
