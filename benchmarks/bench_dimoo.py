"""Lumina-DiMOO-Shortcut sampling speed and memory at the real 8B size with random bf16 weights (GPU;
`--quick` runs a tiny CPU check of the same cases).

Cases per resolution (512^2, 1024^2): vanilla N=64, shortcut B=14/11/9, ML-Cache (28 full steps of 64;
the 36 partial steps recompute ~10% of the positions as queries against all cached keys, falling back to
every position on device when ties select more than the static query budget). Loop time = the sampling loop without the VQ decode (the original's latency boundary); the
decode is timed separately. Compile time is reported separately and excluded; times are means over
`--repeats` calls after one warm-up call. Memory: `program_gib` is what the compiled sampler needs
(params + inputs + outputs + scratch, from XLA's memory analysis); `peak_gib` is the device allocator's
process-wide high-water mark so far, which also counts what random initialisation and compile-time
autotuning took on the side (it grows with the card's free memory).

Several devices: `--fsdp K --tensor M` build the sampling CLI's mesh (`sample.py --fsdp K --tensor M`) over
all visible devices, data = the devices left over (pick how many with CUDA_VISIBLE_DEVICES, or on CPU
XLA_FLAGS=--xla_force_host_platform_device_count=N); the params are created straight onto their shards by
the CLI's partition rules (LLADA_RULES) and the batch (`--batch`, divisible by data x fsdp) is split over
data x fsdp. Each row then holds the mesh shape and n_devices; `program_gib` is per device (the compiled
SPMD program, one device's share), `peak_gib` the largest and `peak_gib_per_device` every local device's
allocator high-water mark (None on CPU, which keeps no stats). `benchmarks/sharded_memory.py`'s estimate is
not computed here: it is this same XLA analysis compiled once more, for fake CPU devices (fsdp-only meshes).
FP8 (`--matmul bf16 fp8` times both on the same random weights, quantised once after the bf16 rows): each
row's `fp8_gemms` counts the cuBLASLt FP8 GEMM calls in the optimised program (on a GPU the run stops with an
error when an FP8 row has none), and an FP8 row's `tokens_equal_bf16` is the fraction of its sampled tokens
equal to the bf16 row of the same case (same key and prompt).
Throughput: `images_per_s` = batch / loop seconds. `full_step_ms` = the vanilla row's loop seconds / steps at
that size (every vanilla step is a full step: the cond and uncond passes and the token update); None
when vanilla is not among the cases or comes after the row.

The JSON (`--out`) is rewritten after every row, so a run cut short keeps what it measured.

The collectives' share of the device time: `benchmarks/profile_ops.py dimoo` with the same
`--fsdp/--tensor/--batch` traces one call and prints, per device and trace line, the summed time of the
collective ops (all-gather, all-reduce, reduce-scatter, ... and their NCCL kernels) next to the total.

  python benchmarks/bench_dimoo.py --out dimoo_h100.json
  python benchmarks/bench_dimoo.py --quick
  python benchmarks/bench_dimoo.py --sizes 1024 --matmul bf16 fp8 --out dimoo_fp8.json   # fails unless FP8 GEMMs run
  python benchmarks/bench_dimoo.py --tensor 4 --batch 1 --out dimoo_tp4.json   # 4 GPUs
  XLA_FLAGS=--xla_force_host_platform_device_count=4 python benchmarks/bench_dimoo.py --quick --fsdp 2 --tensor 2 --batch 2
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from common import FP8_GEMM, report, setup_phase, timed, write_json
from migm_jax.apps.dimoo import batch_split, sampling_mesh
from migm_jax.apps.maskgit import random_params as random_params_like
from migm_jax.models.dimoo_shortcut import DiMOOShortcut, DiMOOShortcutConfig
from migm_jax.models.llada import LLaDA, LLaDAConfig
from migm_jax.models.vqmodel import VQModel, VQModelConfig
from migm_jax.sampling.dimoo import DiMOOModels, DiMOOSampling, build_sampler
from migm_jax.sampling.dimoo_prompts import PromptBatch, TokenLayout
from migm_jax.sharding import batch_sharding, param_shardings

CASES = [("vanilla", None), ("shortcut", 14), ("shortcut", 11), ("shortcut", 9), ("cache", None)]
# --quick: a tiny LLaDA and token layout (CPU-sized), shared with fp8_accuracy.py
QUICK_LLADA = LLaDAConfig(d_model=64, n_layers=2, n_heads=4, n_kv_heads=4, mlp_hidden_size=128, vocab_size=768,
                          embedding_size=768)
QUICK_LAYOUT = TokenLayout(mask=492, newline=240, boa=510, eoa=511, boi=505, eoi=506, uncond=507, text_vocab_size=512,
                           codebook_size=256)
# the real uncond prompt ("<system>Generate an image according to the text prompt.</system><user><uncondition></user>")
UNCOND_IDS = [126332, 36289, 289, 3972, 4631, 297, 268, 3019, 12166, 13, 126333, 126334, 126351, 126335]


def blockwise_init(init_one: Callable[[jax.Array], dict], depth: int, key: jax.Array,
                   where: tuple[str, ...] = ()) -> dict:
    """Random params of a model with `depth` blocks from `init_one(key)`, the jitted init of the same model
    with one block: one small program, compiled once and called once per block with fold_in(key, i);
    block i is call i's `blocks_0`, everything else comes from call 0. `where`: the keys of the subtree
    that holds blocks_0, blocks_1, ... (LLaDA: ('transformer',)).

    Every param keeps its own initializer, so shapes, dtypes and distributions are those of the full
    model's init (the values differ). A jitted init of a whole real-size model is slow to compile on a GPU
    (each param's random draw is a kernel of its own: the 24-block MaskGIT transformer's took 81 s on an
    H200 with autotuning off, ~5x a CPU's; the 8B LLaDA's set-up 170 s) and the 8B model is too large for
    host-side numpy draws."""
    def sub(tree):
        for k in where:
            tree = tree[k]
        return tree

    def put(tree, path, value):
        return value if not path else {**tree, path[0]: put(tree[path[0]], path[1:], value)}

    first = init_one(key)
    stack = dict(sub(first))
    for i in range(1, depth):
        stack[f"blocks_{i}"] = sub(init_one(jax.random.fold_in(key, i)))["blocks_0"]
    return put(first, where, stack)


def random_params(models: DiMOOModels, mesh: jax.sharding.Mesh | None = None) -> dict:
    """Random weights: LLaDA in bf16 (as the released checkpoint; `blockwise_init`), the shortcut and the VQ
    decoder in float32 (host numpy draws, `apps.maskgit.random_params`); with a `mesh`, each param is
    placed on its shards by the partition rules (`param_shardings`)."""
    c, s, v = models.llada, models.shortcut, models.vq
    key = jax.random.PRNGKey(0)

    def one_block(key):
        return LLaDA(dataclasses.replace(c, n_layers=1), param_dtype=jnp.bfloat16).init(key, jnp.zeros((1, 2), jnp.int32))["params"]

    feat, codes = jnp.zeros((1, 2, c.d_model)), jnp.zeros((1, 1, 1), jnp.int32)
    others = {
        "shortcut": random_params_like(lambda: DiMOOShortcut(s).init(key, feat, feat, jnp.ones((1, 2), bool), jnp.ones((1,))), 1),
        "vq": random_params_like(lambda: VQModel(v).init(key, codes, method=VQModel.decode_code), 2),
    }
    if mesh is None:
        return {"llada": blockwise_init(jax.jit(one_block), c.n_layers, key, where=("transformer",)), **jax.device_put(others)}
    one_block = jax.jit(one_block, out_shardings=param_shardings(jax.eval_shape(one_block, key), mesh))
    return {"llada": blockwise_init(one_block, c.n_layers, key, where=("transformer",)),
            **jax.device_put(others, param_shardings(others, mesh))}


def peak_gib() -> list[float] | None:
    """Each local device's allocator high-water mark so far, in GiB; None where the backend keeps no stats."""
    stats = [d.memory_stats() for d in jax.local_devices()]
    if not all(s and "peak_bytes_in_use" in s for s in stats):
        return None
    return [s["peak_bytes_in_use"] / 2**30 for s in stats]


def check_fp8(matmul: str, fp8_gemms: int, mode: str) -> None:
    """Exits loudly when FP8 was asked for on a GPU and the compiled sampler holds no FP8 GEMM (XLA fell back)."""
    if matmul == "fp8" and fp8_gemms == 0 and jax.default_backend() == "gpu":
        raise SystemExit(f"error: --matmul fp8 but the compiled {mode} sampler holds no {FP8_GEMM} call: XLA did "
                         "not rewrite the FP8 dots into cuBLASLt FP8 GEMMs, so this would time bf16 matmuls")


def check_batch(batch: int, mesh: jax.sharding.Mesh | None) -> None:
    """Exits with a one-line error unless `batch` splits evenly over the mesh's data x fsdp devices."""
    if batch % batch_split(mesh):
        raise SystemExit(f"error: --batch {batch} is not divisible by data x fsdp = {batch_split(mesh)} "
                         f"(mesh {dict(mesh.shape)}), the devices the batch is split over")


@dataclasses.dataclass
class Run:
    """What every row of one benchmark run shares: the CLI args, the mesh (None on one device) and its
    shape, the prompt ids, the JSON header, the rows so far and the bf16 rows' codes (the FP8 rows' reference)."""

    args: argparse.Namespace
    mesh: jax.sharding.Mesh | None
    shape: dict
    prompt: list[int]
    uncond: list[int]
    meta: dict
    rows: list[dict] = dataclasses.field(default_factory=list)
    bf16_codes: dict = dataclasses.field(default_factory=dict)

    def place(self, x):
        """x split over the mesh's batch axes (as it is without a mesh)."""
        return x if self.mesh is None else jax.device_put(x, batch_sharding(self.mesh))


def time_size(models: DiMOOModels, params: dict, size: int, run: Run) -> None:
    """The rows of one image size for one matmul choice (`models.matmul`), added to `run.rows` and written to
    `--out` after each."""
    vq, layout, matmul, args = models.vq, models.layout, models.matmul or "bf16", run.args
    grid = (size // vq.scale_factor, size // vq.scale_factor)
    batch = run.place(PromptBatch.from_ids([run.prompt] * args.batch, run.uncond, grid, layout))
    key = jax.random.PRNGKey(1)
    codes = run.place(jnp.zeros((args.batch,) + grid, jnp.int32))
    dec_compile, dec_s, *_ = timed(jax.jit(lambda p, c: VQModel(vq).apply({"params": p}, c, method=VQModel.decode_code)),
                                   params["vq"], codes, repeats=args.repeats)
    print(f"{size}x{size}: VQ decode {dec_s:.4f} s per batch of {args.batch} (compile {dec_compile:.1f} s)", flush=True)
    base = None
    cases = CASES if not args.cases else [(c.split(":")[0], int(c.split(":")[1]) if ":" in c else None) for c in args.cases]
    for mode, budget in cases:
        sampling = DiMOOSampling(steps=args.steps, mode=mode, budget=budget)
        sampler = build_sampler(models, sampling, decode=False)
        sampler = jax.jit(sampler.__wrapped__) if args.triton_gemm else sampler
        compile_s, loop_s, program, fp8_gemms, _, out = timed(sampler, params, batch, key, repeats=args.repeats)
        check_fp8(matmul, fp8_gemms, mode)
        tokens = np.asarray(out["codes"])
        if matmul == "bf16":
            run.bf16_codes[size, mode, budget] = tokens
        ref = run.bf16_codes.get((size, mode, budget)) if matmul == "fp8" else None
        base = loop_s if mode == "vanilla" else base
        peak = peak_gib()
        row = dict(size=size, batch=args.batch, mode=mode, steps=args.steps, budget=budget,
                   full_steps=int((sampling.kinds() == 0).sum()), mesh=run.shape, n_devices=jax.device_count(),
                   s_per_image=loop_s / args.batch, s_per_image_with_decode=(loop_s + dec_s) / args.batch,
                   images_per_s=args.batch / loop_s, full_step_ms=1e3 * base / args.steps if base else None,
                   speedup_vs_vanilla=base / loop_s if base else None, compile_s=compile_s, decode_s=dec_s,
                   program_gib=program, peak_gib=max(peak) if peak else None, peak_gib_per_device=peak,
                   matmul=matmul, fp8_gemms=fp8_gemms,
                   tokens_equal_bf16=float((tokens == ref).mean()) if ref is not None else None,
                   cond_len=int(batch.cond_ids.shape[1]), uncond_len=int(batch.uncond_ids.shape[1]))
        run.rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out:
            write_json(dict(run.meta, rows=run.rows), args.out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny model and images, CPU-friendly")
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="image sides in pixels")
    p.add_argument("--batch", type=int, default=1, help="images per call (the original runs 1); divisible by data x fsdp")
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--prompt-len", type=int, default=64, help="cond prompt tokens (template included)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cases", nargs="+", help="subset of the cases, e.g. vanilla shortcut:14 cache (default: all)")
    p.add_argument("--attention", default="cudnn", help="cudnn | xla | none (exact fp32-softmax XLA path)")
    p.add_argument("--triton-gemm", action="store_true",
                   help="compile with XLA's default GEMM choice (Triton fusions allowed) instead of the sampler's cuBLAS-only options")
    p.add_argument("--fsdp", type=int, default=1, help="devices that split the params (FSDP); the rest split the batch")
    p.add_argument("--tensor", type=int, default=1, help="devices that split each matmul (tensor parallel)")
    p.add_argument("--matmul", nargs="+", default=["bf16"], choices=["bf16", "fp8"],
                   help="LLaDA's block projections: bf16 and/or FP8 e4m3 on weights quantised once (models/fp8.py); "
                        "both run on the same random weights, bf16 first")
    p.add_argument("--out", help="write the results as JSON (after every row)")
    args = p.parse_args()
    mesh = sampling_mesh(args.fsdp, args.tensor)
    check_batch(args.batch, mesh)
    shape = dict(data=1, fsdp=1, tensor=1) if mesh is None else dict(mesh.shape)
    attention = None if args.attention == "none" else args.attention
    if args.quick:
        llada, layout = QUICK_LLADA, QUICK_LAYOUT
        vq = VQModelConfig(block_out_channels=(16, 32, 32), layers_per_block=1, latent_channels=8, norm_num_groups=8,
                           num_vq_embeddings=256)
        sizes, uncond, attention = [32, 64], [507, 3, 4, 5], None
    else:
        llada, layout, vq, sizes, uncond = LLaDAConfig.dimoo_8b(), TokenLayout.real(), VQModelConfig.amused_f16(), args.sizes, UNCOND_IDS
    matmuls = sorted(set(args.matmul), key=["bf16", "fp8"].index)
    models = {m: DiMOOModels(llada, layout, DiMOOShortcutConfig.from_llada(llada), vq, dtype="bfloat16",
                             attention_impl=attention, matmul="fp8" if m == "fp8" else None) for m in matmuls}
    with setup_phase("random 8B-size params" if not args.quick else "random params"):
        params = jax.block_until_ready(random_params(models[matmuls[0]], mesh))
    prompt = [(10 if args.quick else 1000) + i for i in range(args.prompt_len)]  # plain text ids, no special id
    meta = dict(device=jax.devices()[0].device_kind, n_devices=jax.device_count(), mesh=shape,
                date=datetime.date.today().isoformat(), jax=jax.__version__, attention=attention, quick=args.quick,
                triton_gemm=args.triton_gemm, matmul=matmuls)
    run = Run(args, mesh, shape, prompt, uncond, meta)
    for matmul in matmuls:
        if matmul == "fp8":
            with setup_phase("quantising LLaDA's block kernels to FP8"):
                params = jax.block_until_ready(models[matmul].prepare_params(params))
        for size in sizes:
            time_size(models[matmul], params, size, run)
    report(dict(meta, rows=run.rows), args.out)


if __name__ == "__main__":
    main()
