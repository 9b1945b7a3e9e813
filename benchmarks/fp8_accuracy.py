"""How far LLaDA's FP8 forward is from bf16 and float32 at the real 8B size, on random weights (GPU; `--quick`
runs a tiny model on a CPU, as a check).

One cond sequence as the sampler runs it at 1024² (a 64-token prompt, the image region with half of its cells
holding random codes and half MASK) goes through `LLaDA.features` and `LLaDA.image_logits` three times on the
same random bf16 weights (`bench_dimoo.random_params`): float32 (weights upcast, exact float32 attention),
bf16 (cuDNN attention, the sampler's default) and FP8 (`--matmul fp8`: `fp8.quantize_llada` weights, cuDNN
attention). Printed per pair (fp8 vs float32, bf16 vs float32, fp8 vs bf16): the relative L2 error of the
features and of the image logits at the image cells, and the fraction of those cells whose logits' argmax
agrees. Random weights give near-tied logits, so the argmax agreement here is a lower bound of little
meaning; the relative errors are the figures to compare.

  python benchmarks/fp8_accuracy.py --out fp8_accuracy.json
  python benchmarks/fp8_accuracy.py --quick
"""

from __future__ import annotations

import argparse
import datetime

import jax
import jax.numpy as jnp
import numpy as np

from bench_dimoo import QUICK_LAYOUT, QUICK_LLADA, UNCOND_IDS, random_params
from common import report, setup_phase
from migm_jax.compile_options import cublas_gemm_options
from migm_jax.models.dimoo_shortcut import DiMOOShortcutConfig
from migm_jax.models.fp8 import quantize_llada
from migm_jax.models.llada import LLaDA, LLaDAConfig
from migm_jax.models.vqmodel import VQModelConfig
from migm_jax.sampling.dimoo import DiMOOModels
from migm_jax.sampling.dimoo_prompts import PromptBatch, TokenLayout


def half_decoded(batch: PromptBatch, layout: TokenLayout, seed: int = 0) -> tuple[jax.Array, np.ndarray]:
    """(ids (1, L) with half of the image cells set to random codes, image columns (n_img,))."""
    rng = np.random.default_rng(seed)
    ids, cols = np.array(batch.cond_ids), np.asarray(batch.cond_image_positions())[0]
    codes = rng.integers(0, layout.codebook_size, cols.size) + layout.text_vocab_size
    decoded = rng.random(cols.size) < 0.5
    ids[0, cols[decoded]] = codes[decoded]
    return jnp.asarray(ids), cols


def compare(a: tuple[jax.Array, jax.Array], ref: tuple[jax.Array, jax.Array]) -> dict:
    """(features, image logits) of a run against a reference run's: relative L2 errors, argmax agreement."""
    rel = lambda x, y: float(jnp.linalg.norm(x.astype(jnp.float32) - y) / jnp.linalg.norm(y))
    return dict(features_rel_err=rel(a[0], ref[0]), logits_rel_err=rel(a[1], ref[1]),
                argmax_agree=float(jnp.mean(a[1].argmax(-1) == ref[1].argmax(-1))))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny model and image, CPU-friendly")
    p.add_argument("--size", type=int, default=1024, help="image side in pixels")
    p.add_argument("--out", help="write the results as JSON")
    args = p.parse_args()
    if args.quick:
        llada, layout, size, prompt, attention = QUICK_LLADA, QUICK_LAYOUT, 64, [10 + i for i in range(16)], None
    else:
        llada, layout, size, prompt, attention = (LLaDAConfig.dimoo_8b(), TokenLayout.real(), args.size,
                                                  [1000 + i for i in range(64)], "cudnn")
    models = DiMOOModels(llada, layout, DiMOOShortcutConfig.from_llada(llada), VQModelConfig.amused_f16(),
                         dtype="bfloat16")
    grid = (size // 16, size // 16)
    ids, cols = half_decoded(PromptBatch.from_ids([prompt], UNCOND_IDS, grid, layout), layout)
    with setup_phase("random 8B-size params" if not args.quick else "random params"):
        bf16 = jax.block_until_ready(random_params(models)["llada"])
    tv, kb = layout.text_vocab_size, layout.codebook_size

    def forward(dtype, impl, matmul):
        model = LLaDA(llada, dtype, impl, matmul=matmul)

        def run(params, ids):
            feat = model.apply({"params": params}, ids, method=LLaDA.features)
            return feat, model.apply({"params": params}, feat[:, cols], tv, kb, method=LLaDA.image_logits).astype(jnp.float32)
        return jax.jit(run, compiler_options=cublas_gemm_options())

    out = {}
    with setup_phase("float32 forward (weights upcast, exact attention)"):
        f32 = jax.tree_util.tree_map(lambda x: x.astype(jnp.float32), bf16)
        out["float32"] = jax.block_until_ready(forward(jnp.float32, None, None)(f32, ids))
        del f32
    with setup_phase("bf16 forward"):
        out["bf16"] = jax.block_until_ready(forward(jnp.bfloat16, attention, None)(bf16, ids))
    with setup_phase("fp8 forward"):
        out["fp8"] = jax.block_until_ready(forward(jnp.bfloat16, attention, "fp8")(quantize_llada(bf16), ids))
    rows = [dict(run=a, reference=b, **compare(out[a], out[b]))
            for a, b in (("fp8", "float32"), ("bf16", "float32"), ("fp8", "bf16"))]
    for row in rows:
        print(row, flush=True)
    report(dict(device=jax.devices()[0].device_kind, date=datetime.date.today().isoformat(), jax=jax.__version__,
                quick=args.quick, size=size, seq_len=int(ids.shape[1]), image_cells=int(cols.size), rows=rows), args.out)


if __name__ == "__main__":
    main()
