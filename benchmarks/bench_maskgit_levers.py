"""What each speed lever of the MaskGIT transformer buys, measured in one run (GPU, random weights at real size).

Three tables, each against its own baseline in the same process:
  mlp        fc1 + bias + GELU over (sequences x 1025) rows: XLA (GEMM, then a GELU pass; exact and tanh
             forms, with and without cuBLASLt, and whether a GELU epilogue appears in the compiled program)
             against the one-kernel `dense_gelu` at several tilings, with the largest difference of the
             outputs from the first (the model's exact path);
  attention  cuDNN's fused attention at head dim 48 and T = 1024 / 1025 / padded lengths;
  forward    one full transformer forward (features + head, the CFG-doubled batch) per model variant and
             XLA option set.

  python benchmarks/bench_maskgit_levers.py --sequences 100 --out levers.json
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np

from common import report, timed
from migm_jax.apps.maskgit import random_params
from migm_jax.models.layers import cast_kernels, gelu
from migm_jax.models.maskgit import MaskTransformer, MaskTransformerConfig, without_kv_biases
from pallas_dense_gelu import Tiling, dense_gelu

TILINGS = [Tiling(128, 128, 64, 8, 3), Tiling(128, 256, 64, 8, 3), Tiling(128, 128, 64, 4, 4),
           Tiling(64, 256, 64, 4, 3), Tiling(256, 128, 64, 8, 3), Tiling(128, 256, 32, 8, 4),
           Tiling(128, 128, 32, 4, 5), Tiling(64, 128, 64, 4, 4)]

FORWARD_VARIANTS = {  # name -> (MaskTransformer keyword arguments, jit compiler options)
    "default": ({}, None),
    "cublas_only": ({}, {"xla_gpu_enable_triton_gemm": False}),
    "no_cublas_fallback": ({}, {"xla_gpu_cublas_fallback": False}),
    "seq_multiple_64": ({"seq_multiple": 64}, None),
    "seq_multiple_128": ({"seq_multiple": 128}, None),
    "approximate_gelu": ({"approximate_gelu": True}, None),
}


XLA_MLP = {  # fc1 + bias + GELU as XLA compiles it: (x, w bf16, b float32) -> bf16
    "xla": lambda x, w, b: gelu(jnp.dot(x, w) + b.astype(jnp.bfloat16)),  # the model's exact path
    "xla_tanh": lambda x, w, b: gelu(jnp.dot(x, w) + b.astype(jnp.bfloat16), approximate=True),  # --fast-gelu
    "xla_tanh_bf16": lambda x, w, b: jax.nn.gelu(jnp.dot(x, w) + b.astype(jnp.bfloat16), approximate=True),
    "xla_tanh_f32_gemm": lambda x, w, b: jax.nn.gelu(jnp.dot(x, w, preferred_element_type=jnp.float32) + b,
                                                     approximate=True).astype(jnp.bfloat16),
}
XLA_OPTIONS = {"": None, "+cublaslt": {"xla_gpu_enable_cublaslt": True}}  # cuBLASLt has bias / GELU epilogues


def ms(fn, *args, repeats: int) -> float:
    return timed(fn, *args, repeats=repeats).seconds * 1e3


def mlp_table(rows: int, repeats: int) -> list[dict]:
    kx, kw, kb = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(kx, (rows, 768), jnp.bfloat16)
    w = (jax.random.normal(kw, (768, 3072), jnp.float32) * 768 ** -0.5).astype(jnp.bfloat16)
    b = jax.random.normal(kb, (3072,), jnp.float32) * 0.1
    out = []
    for (name, f), (opt_name, options) in itertools.product(XLA_MLP.items(), XLA_OPTIONS.items()):
        timing = timed(jax.jit(f, compiler_options=options), x, w, b, repeats=repeats)
        y = np.asarray(timing.output.astype(jnp.float32))
        if not out:
            ref = y  # the model's exact path, compiled as the sampler compiles it
        out.append(dict(kind="mlp", variant=name + opt_name, rows=rows, ms=timing.seconds * 1e3,
                        gelu_epilogues=timing.compiled.as_text().count("GELU"), max_abs_diff=float(np.abs(y - ref).max())))
        print(json.dumps(out[-1]), flush=True)
    for t in TILINGS:
        fn = jax.jit(lambda x, w, b, t=t: dense_gelu(x, w, b, tiling=t))
        try:
            y = np.asarray(fn(x, w, b).astype(jnp.float32))
            row = dict(ms=ms(fn, x, w, b, repeats=repeats), max_abs_diff=float(np.abs(y - ref).max()))
        except Exception as e:  # a tiling the compiler rejects (e.g. shared memory) is reported, not fatal
            row = dict(error=str(e).splitlines()[0][:200])
        out.append(dict(kind="mlp", variant=str(dataclasses.astuple(t)), rows=rows, **row))
        print(json.dumps(out[-1]), flush=True)
    return out


def attention_table(sequences: int, repeats: int) -> list[dict]:
    out = []
    for t, valid in [(1024, None), (1025, None), (1088, 1025), (1152, 1025), (1088, None)]:
        k = jax.random.split(jax.random.PRNGKey(t), 3)
        q, kk, v = (jax.random.normal(ki, (sequences, t, 16, 48), jnp.bfloat16) for ki in k)
        lengths = None if valid is None else jnp.full((sequences,), valid, jnp.int32)
        fn = jax.jit(lambda q, k, v, n: jax.nn.dot_product_attention(q, k, v, query_seq_lengths=n,
                                                                     key_value_seq_lengths=n, implementation="cudnn"))
        out.append(dict(kind="attention", variant=f"T={t}" + (f" lengths={valid}" if valid else ""),
                        ms=ms(fn, q, kk, v, lengths, repeats=repeats)))
        print(json.dumps(out[-1]), flush=True)
    return out


def forward_table(sequences: int, variants: list[str], repeats: int) -> list[dict]:
    cfg = MaskTransformerConfig.preset("base")
    codes0, labels0 = jnp.zeros((1, cfg.grid, cfg.grid), jnp.int32), jnp.zeros((1,), jnp.int32)
    params = jax.device_put(random_params(
        lambda: MaskTransformer(cfg).init(jax.random.PRNGKey(0), codes0, labels0, labels0 > 0), 0))
    params = cast_kernels(without_kv_biases(params), jnp.bfloat16)
    codes = jax.random.randint(jax.random.PRNGKey(2), (sequences, cfg.grid, cfg.grid), 0, cfg.codebook_size + 1)
    labels = jnp.arange(sequences, dtype=jnp.int32) % cfg.nclass
    drop = jnp.arange(sequences) >= sequences // 2
    out, base = [], None
    for name in variants:
        kwargs, options = FORWARD_VARIANTS[name]
        model = MaskTransformer(cfg, jnp.bfloat16, "cudnn", kv_bias=False, **kwargs)
        fn = jax.jit(lambda p, c, l, d, model=model: model.apply({"params": p}, c, l, d), compiler_options=options)
        timing = timed(fn, params, codes, labels, drop, repeats=repeats)
        feat = np.asarray(timing.output[1])
        base = feat if base is None else base
        out.append(dict(kind="forward", variant=name, sequences=sequences, ms=timing.seconds * 1e3,
                        compile_s=timing.compile_s, feat_max_abs_diff_vs_default=float(np.abs(feat - base).max())))
        print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sequences", type=int, nargs="+", default=[100, 20], help="CFG-doubled batch sizes")
    p.add_argument("--tables", nargs="+", default=["mlp", "attention", "forward"])
    p.add_argument("--variants", nargs="+", default=list(FORWARD_VARIANTS), choices=list(FORWARD_VARIANTS))
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out")
    args = p.parse_args()
    rows = []
    for s in args.sequences:
        if "mlp" in args.tables:
            rows += mlp_table(s * 1025, args.repeats)
        if "attention" in args.tables:
            rows += attention_table(s, args.repeats)
        if "forward" in args.tables:
            rows += forward_table(s, args.variants, args.repeats)
    report(dict(device=jax.devices()[0].device_kind, date=datetime.date.today().isoformat(), jax=jax.__version__,
                rows=rows), args.out)
    for r in rows:
        print(f"{r['kind']:9s} {r.get('sequences', r.get('rows', '')):>7} {r['variant']:32s} "
              f"{r.get('ms', float('nan')):9.3f} ms  {r.get('max_abs_diff', r.get('feat_max_abs_diff_vs_default', ''))}"
              f"{r.get('error', '')}")


if __name__ == "__main__":
    main()
