"""Shortcut training throughput (samples/s of the jitted train step) at real size, random weights (GPU;
`--quick` runs tiny models on CPU as a check).

MaskGIT: teacher base (768 x 24, T = 1025), shortcut 1 block, 16 heads, bottleneck 2 (384).
DiMOO: shortcut d 4096 -> 2048, 32 heads, MLP 12288, L = 4224 (a 60-token prompt + the 1024^2 image
region; uncond rows padded); the teacher has 1 layer (a one-step train step only uses its embedding
and head; the full 8B is needed only for online trajectories / rollout targets).
The step = expansion, shortcut forward + backward, KL logging (3 head passes), AdamW, EMA; batches are
synthetic and already on device (data loading excluded). Compile time is reported separately.

  python benchmarks/bench_train.py --family maskgit dimoo --out train_results.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from migm_jax.sampling.schedules import dimoo_keep_n, maskgit_schedule
from migm_jax.sharding import batch_sharding, make_mesh
from migm_jax.training.config import TrainConfig
from migm_jax.training.loop import build_family
from migm_jax.training.step import fsdp_sharding, make_init, make_train_step, step_config

SMALL_LAYOUT = {"mask": 492, "newline": 240, "boa": 500, "eoa": 501, "boi": 502, "eoi": 503, "uncond": 504,
                "text_vocab_size": 512, "codebook_size": 256}
REAL_LAYOUT = {"mask": 126336, "newline": 126084, "boa": 126354, "eoa": 126355, "boi": 126349, "eoi": 126350,
               "uncond": 126351, "text_vocab_size": 126356, "codebook_size": 8192}


def configs(quick: bool, attention, log_kl: bool) -> dict[str, TrainConfig]:
    common = dict(compute_dtype="bfloat16", teacher_dtype="bfloat16", attention_impl=attention, log_kl=log_kl)
    if quick:
        return {
            "maskgit": TrainConfig(teacher={"hidden": 64, "depth": 2, "heads": 4, "mlp_dim": 128, "codebook_size": 64, "grid": 8},
                                   shortcut={"heads": 4}, sampling={"steps": 8}, **common),
            "dimoo": TrainConfig(family="dimoo", teacher={"llada": {"d_model": 64, "n_layers": 1, "n_heads": 4, "n_kv_heads": 4,
                                                                     "mlp_hidden_size": 128, "vocab_size": 768, "embedding_size": 768},
                                                           "layout": SMALL_LAYOUT, "grid": [4, 4], "seq_len": 40},
                                 sampling={"steps": 8}, **common),
        }
    return {
        "maskgit": TrainConfig(teacher={"hidden": 768, "depth": 24, "heads": 16, "mlp_dim": 3072, "grid": 32},
                               shortcut={"heads": 16, "n_block": 1, "bottleneck_ratio": 2}, sampling={"steps": 15}, **common),
        "dimoo": TrainConfig(family="dimoo", teacher={"llada": {"n_layers": 1}, "layout": REAL_LAYOUT, "grid": [64, 64],
                                                       "seq_len": 4224}, sampling={"steps": 64}, **common),
    }


def synthetic_batch(family, b: int, rng: np.random.Generator) -> dict:
    """Raw samples with random features and valid ids / fixing orders (half cond, half uncond rows)."""
    t, d = family.feature_shape
    raw = {"prev_feat": rng.normal(size=(b, t, d)).astype(jnp.bfloat16),
           "tgt_feat": rng.normal(size=(b, t, d)).astype(jnp.bfloat16),
           "step": rng.integers(0, family.steps - 1, b).astype(np.int32)}
    if family.name == "maskgit":
        c = family.transformer
        fixed = np.repeat(np.arange(family.steps), maskgit_schedule(family.steps, "arccos", c.grid))
        raw["order"] = np.stack([np.concatenate([rng.permutation(fixed), [-1]]) for _ in range(b)]).astype(np.int32)
        codes = rng.integers(0, c.codebook_size, (b, c.grid ** 2))
        raw["ids"] = np.concatenate([codes, np.full((b, 1), c.codebook_size + 1)], 1).astype(np.int32)
        return raw
    lay, (gh, gw) = family.layout, family.grid
    n = gh * gw
    keep = np.concatenate([[n], dimoo_keep_n(family.steps, n)])
    fixed = np.repeat(np.arange(family.steps), keep[:-1] - keep[1:])
    region = gh * (gw + 1) + 4
    ids, order = np.zeros((b, t), np.int32), np.full((b, t), -1, np.int32)
    valid, always_new = np.zeros((b, t), bool), np.zeros((b, t), bool)
    for i in range(b):
        prompt = t - region if i % 2 == 0 else 14
        ids[i, :prompt + region] = rng.integers(0, lay.text_vocab_size, prompt + region)
        cells = prompt + 2 + np.arange(n) // gw * (gw + 1) + np.arange(n) % gw
        ids[i, cells] = rng.integers(0, lay.codebook_size, n) + lay.text_vocab_size
        order[i, cells] = rng.permutation(fixed)
        valid[i, :prompt + region] = True
        always_new[i, :prompt] = i % 2 == 0
    return dict(raw, ids=ids, order=order, valid=valid, always_new=always_new)


def train_step_call(cfg: TrainConfig, batch: int, fsdp: int = 1):
    """(family, jitted train step, (state, raw batch, teacher params)) for `batch` synthetic samples on a mesh of
    all devices with `fsdp` of them on the fsdp axis (params, EMA and Adam moments split over it)."""
    family, teacher, _, _, _ = build_family(cfg)
    mesh = make_mesh(fsdp=fsdp)
    scfg = step_config(cfg)
    state = make_init(family, scfg, mesh)(None, jax.random.PRNGKey(0))
    teacher = jax.device_put(teacher, fsdp_sharding(mesh, teacher))  # as train.py lays it out
    raw = jax.device_put(synthetic_batch(family, batch, np.random.default_rng(0)), batch_sharding(mesh))
    return family, make_train_step(family, scfg, mesh, 1), (state, raw, teacher)


def bench(cfg: TrainConfig, batch: int, steps: int, fsdp: int = 1) -> dict:
    family, fn, (state, raw, teacher) = train_step_call(cfg, batch, fsdp)
    t0 = time.perf_counter()
    compiled = fn.lower(state, raw, teacher, jnp.int32(0)).compile()
    compile_s = time.perf_counter() - t0
    state, metrics = compiled(state, raw, teacher, jnp.int32(0))
    jax.block_until_ready(metrics)
    t0 = time.perf_counter()
    for m in range(steps):
        state, metrics = compiled(state, raw, teacher, jnp.int32(m + 1))
    jax.block_until_ready((state, metrics))
    step_s = (time.perf_counter() - t0) / steps
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    return {"family": cfg.family, "batch": batch, "seq_len": family.feature_shape[0], "shortcut_params": int(n_params),
            "compile_s": compile_s, "step_s": step_s, "samples_per_s": batch / step_s,
            "loss": float(metrics["loss"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny models, CPU-friendly")
    p.add_argument("--family", nargs="+", default=["maskgit", "dimoo"], choices=["maskgit", "dimoo"])
    p.add_argument("--batches", type=int, nargs="+", help="global batch sizes (default: maskgit 4 16 64, dimoo 1 2 4)")
    p.add_argument("--steps", type=int, default=10, help="timed steps after one warm-up step")
    p.add_argument("--fsdp", type=int, nargs="+", default=[1],
                   help="devices on the fsdp axis (ZeRO-3: params and optimizer state split); one run per value")
    p.add_argument("--attention", default="cudnn", help="cudnn | xla | none (exact fp32-softmax path)")
    p.add_argument("--no-kl-logging", action="store_true", help="skip the KL metrics (kl_weight is 0 in the recipe)")
    p.add_argument("--out", help="write the results as JSON")
    args = p.parse_args()
    attention = None if args.quick or args.attention == "none" else args.attention
    cfgs = configs(args.quick, attention, not args.no_kl_logging)
    default_batches = {"maskgit": [4] if args.quick else [4, 16, 64], "dimoo": [2] if args.quick else [1, 2, 4]}
    device = f"{jax.devices()[0].device_kind} x{jax.device_count()}"
    date = datetime.date.today().isoformat()
    rows = []
    print("| family | batch | fsdp | L | compile s | step ms | samples/s | device | date |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for family in args.family:
        for fsdp in args.fsdp:
            for batch in args.batches or default_batches[family]:
                r = bench(cfgs[family], batch, 2 if args.quick else args.steps, fsdp)
                r.update(device=device, date=date, fsdp=fsdp, attention=attention, kl_logging=not args.no_kl_logging)
                rows.append(r)
                print(f"| {family} | {batch} | {fsdp} | {r['seq_len']} | {r['compile_s']:.1f} | {1000 * r['step_s']:.1f} | "
                      f"{r['samples_per_s']:.1f} | {device} | {date} |", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
