"""Where the device time of a sampler goes: the top XLA ops of one compiled call, from a profiler trace (GPU).

Runs one sampler configuration at real size with random weights (the models of `bench_maskgit.py` /
`bench_dimoo.py`), traces one call after warm-up and prints, per line of the GPU plane of the trace
(XLA ops, kernels), the ops with the largest summed device time. Divide by the number of steps of the
kind you look at: e.g. DiMOO `--steps 4` vanilla gives four full steps, `--steps 8 --budget 2` two
full and six shortcut steps. Each line's header also gives the summed time of its collective ops (XLA's
all-gather / all-reduce / reduce-scatter / all-to-all / collective-permute and the NCCL kernels): on a
mesh (dimoo `--fsdp K --tensor M`, the sampling CLI's mesh, data = the devices left over) this is the
collectives' share of the device time, an upper bound of the exposed part since they can overlap compute.

  python benchmarks/profile_ops.py dimoo --size 1024 --steps 4
  python benchmarks/profile_ops.py dimoo --size 1024 --steps 4 --matmul fp8
  python benchmarks/profile_ops.py dimoo --size 1024 --steps 4 --tensor 4   # 4 GPUs: a table per device
  python benchmarks/profile_ops.py maskgit --batch 50 --steps 8 --approximate-gelu
  python benchmarks/profile_ops.py train-dimoo --batch 8 [--fsdp 2]   # one train step of bench_train.py
"""

from __future__ import annotations

import argparse
import collections
import glob
import re
import tempfile

import jax
import jax.numpy as jnp
from jax.profiler import ProfileData

from common import timed

COLLECTIVE = re.compile(r"all-gather|all-reduce|reduce-scatter|all-to-all|collective-permute|nccl", re.IGNORECASE)


def device_op_times(fn, *args, repeats: int = 2) -> tuple[float, dict[str, collections.Counter], dict[str, collections.Counter]]:
    """(seconds per call, {line: Counter(op -> total ns)}, {line: Counter(op -> count)}) of one traced call."""
    timing = timed(fn, *args, repeats=repeats)
    print(f"compiled in {timing.compile_s:.1f} s, {timing.seconds * 1e3:.2f} ms per call; tracing one call", flush=True)
    compiled, seconds = timing.compiled, timing.seconds  # the timed program itself: no second compile
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d):
            jax.block_until_ready(compiled(*args))
        print("reading the trace", flush=True)
        (path,) = glob.glob(f"{d}/**/*.xplane.pb", recursive=True)
        data = ProfileData.from_file(path)
        totals, counts = collections.defaultdict(collections.Counter), collections.defaultdict(collections.Counter)
        for plane in data.planes:
            if not plane.name.startswith("/device:"):
                continue
            for line in plane.lines:
                name = f"{plane.name} {line.name}"
                for event in line.events:
                    totals[name][event.name] += event.duration_ns
                    counts[name][event.name] += 1
    return seconds, totals, counts


def print_table(seconds: float, totals: dict, counts: dict, top: int) -> None:
    print(f"wall {seconds * 1e3:.2f} ms per call")
    for line, ops in totals.items():
        total = sum(ops.values())
        comm = sum(ns for name, ns in ops.items() if COLLECTIVE.search(name))
        print(f"\n== {line}: {len(ops)} distinct ops, {sum(counts[line].values())} events, {total / 1e6:.2f} ms summed, "
              f"collectives {comm / 1e6:.2f} ms ({100 * comm / max(total, 1):.1f}%)")
        for name, ns in ops.most_common(top):
            print(f"{ns / 1e6:10.3f} ms {counts[line][name]:6d}x  {name[:150]}")


def dimoo_call(args):
    from bench_dimoo import UNCOND_IDS, check_batch, random_params
    from migm_jax.apps.dimoo import sampling_mesh
    from migm_jax.models.dimoo_shortcut import DiMOOShortcutConfig
    from migm_jax.models.llada import LLaDAConfig
    from migm_jax.models.vqmodel import VQModelConfig
    from migm_jax.sampling.dimoo import DiMOOModels, DiMOOSampling, build_sampler
    from migm_jax.sampling.dimoo_prompts import PromptBatch, TokenLayout
    from migm_jax.sharding import batch_sharding

    mesh = sampling_mesh(args.fsdp, args.tensor)
    check_batch(args.batch, mesh)
    llada, vq = LLaDAConfig.dimoo_8b(), VQModelConfig.amused_f16()
    models = DiMOOModels(llada, TokenLayout.real(), DiMOOShortcutConfig.from_llada(llada), vq, dtype="bfloat16",
                         attention_impl="cudnn", matmul="fp8" if args.matmul == "fp8" else None)
    grid = (args.size // vq.scale_factor,) * 2
    batch = PromptBatch.from_ids([[1000 + i for i in range(args.prompt_len)]] * args.batch, UNCOND_IDS, grid,
                                 models.layout)
    batch = batch if mesh is None else jax.device_put(batch, batch_sharding(mesh))
    mode = "vanilla" if args.budget is None else "shortcut"
    fn = build_sampler(models, DiMOOSampling(steps=args.steps, mode=mode, budget=args.budget), decode=False, mesh=mesh)
    return fn, (models.prepare_params(random_params(models, mesh)), batch, jax.random.PRNGKey(1))


def maskgit_call(args):
    from bench_maskgit import random_params
    from migm_jax.models.maskgit import MaskTransformerConfig
    from migm_jax.models.shortcut import MaskGITShortcutConfig
    from migm_jax.models.vqgan import VQGANConfig
    from migm_jax.sampling.maskgit import MaskGITModels, MaskGITSampling, build_sampler

    models = MaskGITModels(MaskTransformerConfig.preset("base"), MaskGITShortcutConfig(), VQGANConfig.f16_1024(), dtype="bfloat16",
                           attention_impl="cudnn", approximate_gelu=args.approximate_gelu)
    mode = "vanilla" if args.budget is None else "shortcut"
    fn = build_sampler(models, MaskGITSampling(steps=args.steps, mode=mode, budget=args.budget), decode=False)
    labels = jnp.arange(args.batch, dtype=jnp.int32) % 1000
    return fn, (random_params(models), labels, jax.random.PRNGKey(1))


def train_call(args):
    from bench_train import configs, train_step_call

    cfg = configs(False, "xla", True)[args.family.removeprefix("train-")]
    step, call_args = train_step_call(cfg, args.batch, args.fsdp)[1:]
    return (lambda state, raw, tp: step(state, raw, tp, jnp.int32(0))), call_args  # no donation inside this jit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("family", choices=["dimoo", "maskgit", "train-dimoo", "train-maskgit"])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--budget", type=int, help="shortcut mode with this many full steps (default: vanilla)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--size", type=int, default=1024, help="DiMOO image side")
    p.add_argument("--prompt-len", type=int, default=64, help="DiMOO cond prompt tokens")
    p.add_argument("--approximate-gelu", action="store_true", help="MaskGIT: tanh GELU")
    p.add_argument("--fsdp", type=int, default=1, help="dimoo, train-*: devices on the fsdp axis")
    p.add_argument("--tensor", type=int, default=1, help="dimoo: devices on the tensor axis")
    p.add_argument("--matmul", default="bf16", choices=["bf16", "fp8"], help="dimoo: LLaDA's block projections")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    fn, call_args = {"dimoo": dimoo_call, "maskgit": maskgit_call}.get(args.family, train_call)(args)
    print("random weights ready", flush=True)
    print_table(*device_op_times(fn, *call_args), args.top)


if __name__ == "__main__":
    main()
