"""MaskGIT-Shortcut sampling speed at real size with random weights (GPU; `--quick` runs a tiny CPU check).

Loop time = the sampling loop without the VQGAN decode (the original's timing boundary); the decode
is timed separately and end-to-end = loop + decode. Compile time is reported separately and excluded.

  python benchmarks/bench_maskgit.py --out results.json
  python benchmarks/bench_maskgit.py --class-token-apart --out apart.json   # cuDNN at T = 1024 + the class token
"""

from __future__ import annotations

import argparse
import datetime
import json

import jax
import jax.numpy as jnp

from common import report, timed
from migm_jax.apps.maskgit import random_pipeline_params
from migm_jax.models.maskgit import MaskTransformerConfig
from migm_jax.models.shortcut import MaskGITShortcutConfig
from migm_jax.models.vqgan import VQGAN, VQGANConfig
from migm_jax.sampling.maskgit import MaskGITModels, MaskGITSampling, build_sampler

CASES = ["vanilla:32", "shortcut:32:12", "reuse:32:12", "vanilla:15", "shortcut:15:5"]


def parse_case(case: str) -> tuple[str, int, int | None]:
    """'mode:steps[:budget]' -> (mode, steps, budget)."""
    mode, steps, *budget = case.split(":")
    return mode, int(steps), int(budget[0]) if budget else None


def random_params(models: MaskGITModels) -> dict:
    """Random transformer, shortcut and VQGAN-decoder params on the default device (numpy draws,
    `random_pipeline_params`: nothing compiled; a jitted Flax init of the real-size transformer took 81 s
    to compile on an H200)."""
    return jax.device_put(random_pipeline_params(models.transformer, models.shortcut, models.vqgan, 0))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny model, batch 2, CPU-friendly")
    p.add_argument("--batches", type=int, nargs="+", default=[10, 50])
    p.add_argument("--cases", nargs="+", default=CASES, help="mode:steps[:budget] (default: the issue's five)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--attention", default="cudnn", help="cudnn | xla | none (exact fp32 path)")
    p.add_argument("--approximate-gelu", action="store_true", help="tanh GELU instead of erf")
    p.add_argument("--class-token-apart", action="store_true",
                   help="transformer attention at T = 1024 with the class token merged by its softmax weight")
    p.add_argument("--out", help="write the results as JSON")
    args = p.parse_args()
    attention = None if args.attention == "none" else args.attention
    if args.quick:
        t = MaskTransformerConfig(hidden=64, depth=2, heads=4, mlp_dim=128, grid=8)
        s = MaskGITShortcutConfig(hidden=64, heads=4)
        v = VQGANConfig(embed_dim=8, n_embed=1024, z_channels=16, ch=32, ch_mult=(1, 2), num_res_blocks=1,
                        attn_resolutions=(16,), resolution=32, in_channels=3, out_ch=3)
        image_size, batches = 16, [2]
        attention = "xla" if args.class_token_apart else None  # it needs a jax.nn implementation
    else:
        t, s, v, image_size, batches = MaskTransformerConfig.preset("base"), MaskGITShortcutConfig(), VQGANConfig.f16_1024(), 512, args.batches
    models = MaskGITModels(t, s, v, dtype="bfloat16", attention_impl=attention, approximate_gelu=args.approximate_gelu,
                           class_token_apart=args.class_token_apart)
    params = random_params(models)
    device = jax.devices()[0].device_kind
    rows = []
    for b in batches:
        labels, key = jnp.arange(b, dtype=jnp.int32) % 1000, jax.random.PRNGKey(1)
        codes = jnp.zeros((b, t.grid, t.grid), jnp.int32)
        dec_compile, dec_s, *_ = timed(lambda p, c: VQGAN(v).apply({"params": p}, c, method=VQGAN.decode_code),
                                   params["vqgan"], codes, repeats=args.repeats)
        print(f"batch {b}: VQGAN decode {dec_s:.4f} s (compile {dec_compile:.1f} s)", flush=True)
        base = None
        for mode, n, budget in map(parse_case, args.cases):
            fn = build_sampler(models, MaskGITSampling(steps=n, mode=mode, budget=budget), decode=False)
            compile_s, loop_s, *_ = timed(fn, params, labels, key, repeats=args.repeats)
            base = loop_s if (mode, n) == ("vanilla", 32) else base
            row = dict(batch=b, mode=mode, steps=n, budget=budget, loop_s=loop_s, end_to_end_s=loop_s + dec_s,
                       images_per_s=b / (loop_s + dec_s), speedup_vs_vanilla32=base / loop_s if base else None,
                       compile_s=compile_s, decode_s=dec_s)
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = dict(device=device, date=datetime.date.today().isoformat(), jax=jax.__version__, attention=attention,
                  approximate_gelu=args.approximate_gelu, class_token_apart=args.class_token_apart, rows=rows)
    report(result, args.out)


if __name__ == "__main__":
    main()
