"""Single kernels in bf16 and in FP8 at the models' shapes (GPU; `--quick` runs tiny shapes on a CPU, as a check).

GEMMs: `x (M, K) @ W (K, N)` in bf16 against `models/fp8.fp8_matmul` on the `quantize_kernel` weight (the
per-row quantisation of x included, as in the models), compiled with the samplers' options (cuBLAS only).
Shapes: DiMOO at 1024² (one side of cond / uncond: M = 4240 padded rows, d 4096, MLP 12288) and MaskGIT
(M = 20 x 1025 = CFG batch 10, and 100 x 1025 = batch 50; d 768, MLP 3072). Each FP8 row counts the
cuBLASLt FP8 GEMM calls in its program (0 means XLA fell back to bf16 and the row times that).

Attention (GPU with cuDNN only): cuDNN's flash attention at DiMOO's shape (T = 4240, 32 heads of 128) in
bf16 with key lengths (the samplers' call) against its FP8 inference kernel (`fused_attention_stablehlo`,
e4m3 q/k/v, unit scales, no key lengths or mask: it takes neither).

  python benchmarks/bench_fp8_kernels.py --out fp8_kernels.json
  python benchmarks/bench_fp8_kernels.py --quick
"""

from __future__ import annotations

import argparse
import datetime
import time

import jax
import jax.numpy as jnp

from common import FP8_GEMM, report
from migm_jax.compile_options import cublas_gemm_options
from migm_jax.models.fp8 import FP8, fp8_matmul, quantize_kernel

GEMMS = [  # (model, layer, M, K, N)
    ("dimoo", "q/k/v/o", 4240, 4096, 4096), ("dimoo", "gate/up", 4240, 4096, 12288), ("dimoo", "down", 4240, 12288, 4096),
    ("maskgit b10", "qkv", 20500, 768, 2304), ("maskgit b10", "up", 20500, 768, 3072), ("maskgit b10", "down", 20500, 3072, 768),
    ("maskgit b50", "qkv", 102500, 768, 2304), ("maskgit b50", "up", 102500, 768, 3072), ("maskgit b50", "down", 102500, 3072, 768),
]


def kernel_ms(fn, *args, calls: int) -> tuple[float, int]:
    """(ms per call of jit(fn) over `calls` calls dispatched back to back with one sync at the end, its FP8
    GEMM count). A sync after every call (as `common.timed` does for whole samplers) would add the
    dispatch latency to kernels of a millisecond or less."""
    compiled = jax.jit(fn, compiler_options=cublas_gemm_options()).lower(*args).compile()
    jax.block_until_ready(compiled(*args))  # warm-up
    t0 = time.perf_counter()
    for _ in range(calls):
        out = compiled(*args)
    jax.block_until_ready(out)
    return 1e3 * (time.perf_counter() - t0) / calls, compiled.as_text().count(FP8_GEMM)


def gemm_rows(scale: int, calls: int) -> list[dict]:
    """One row per GEMM shape (each dimension divided by `scale`): bf16 and FP8 ms and TFLOP/s."""
    key, rows = jax.random.PRNGKey(0), []
    for model, layer, m, k, n in GEMMS:
        m, k, n = m // scale, k // scale, n // scale
        x = jax.random.normal(key, (m, k), jnp.bfloat16)
        w = (jax.random.normal(jax.random.fold_in(key, 1), (k, n), jnp.float32) * k ** -0.5).astype(jnp.bfloat16)
        q = quantize_kernel(w)
        bf16_ms, _ = kernel_ms(lambda x, w: x @ w, x, w, calls=calls)
        fp8_ms, fp8_gemms = kernel_ms(lambda x, q: fp8_matmul(x, q["qkernel"], q["scale"], jnp.bfloat16), x, q, calls=calls)
        gflop = 2 * m * k * n / 1e9
        rows.append(dict(kernel="gemm", model=model, layer=layer, m=m, k=k, n=n, bf16_ms=bf16_ms, fp8_ms=fp8_ms,
                         bf16_tflops=gflop / bf16_ms, fp8_tflops=gflop / fp8_ms, fp8_speedup=bf16_ms / fp8_ms,
                         fp8_gemms=fp8_gemms))
        print(rows[-1], flush=True)
    return rows


def attention_rows(calls: int) -> list[dict]:
    """cuDNN flash attention bf16 (with key lengths) vs its FP8 inference kernel, cond + uncond at DiMOO 1024²."""
    from jax._src.cudnn import fused_attention_stablehlo as cudnn_attention

    key, rows = jax.random.PRNGKey(0), []
    unit = {name: jnp.ones((1, 1, 1, 1), jnp.float32) for name in cudnn_attention.fp8_params_keys}
    for b, t, heads, dim in [(1, 4240, 32, 128), (2, 4240, 32, 128)]:
        q, k, v = (jax.random.normal(jax.random.fold_in(key, i), (b, t, heads, dim), jnp.bfloat16) for i in range(3))
        lengths = jnp.full((b,), t - 12, jnp.int32)
        bf16_ms, _ = kernel_ms(lambda q, k, v: jax.nn.dot_product_attention(
            q, k, v, implementation="cudnn", key_value_seq_lengths=lengths), q, k, v, calls=calls)
        fp8_ms, _ = kernel_ms(lambda q, k, v: cudnn_attention.dot_product_attention(
            q, k, v, fp8_params=unit, scale=dim ** -0.5, use_fp8=True)[0], *(a.astype(FP8) for a in (q, k, v)),
            calls=calls)
        gflop = 4 * b * heads * t * t * dim / 1e9
        rows.append(dict(kernel="attention", model="dimoo", b=b, t=t, heads=heads, head_dim=dim, bf16_ms=bf16_ms,
                         fp8_ms=fp8_ms, bf16_tflops=gflop / bf16_ms, fp8_tflops=gflop / fp8_ms,
                         fp8_speedup=bf16_ms / fp8_ms))
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="shapes divided by 16, no attention: a CPU check")
    p.add_argument("--calls", type=int, default=50, help="back-to-back calls timed per kernel")
    p.add_argument("--out", help="write the results as JSON")
    args = p.parse_args()
    rows = gemm_rows(16 if args.quick else 1, args.calls)
    if not args.quick and jax.default_backend() == "gpu":
        rows += attention_rows(args.calls)
    report(dict(device=jax.devices()[0].device_kind, date=datetime.date.today().isoformat(), jax=jax.__version__,
                quick=args.quick, rows=rows), args.out)


if __name__ == "__main__":
    main()
