"""Throughput of the FID evaluation at real size with random weights (GPU; `--quick` runs a tiny CPU check).

Times what `python -m migm_jax.eval fid` does per batch, through the same function (`run.run_batch`): sample
and decode on the devices, per-image min-max to uint8, torch-fidelity preprocessing, Inception-v3 pool and
logits, moments reduced on the devices, float64 accumulation on the host. Compile (the first batch) is
reported separately (the sampler and decoder compiled as the command compiles them, then the first batch, which
compiles the metric network's programs; each is logged with its compile time); images/s is over the later
batches, and the 50k projection is 50,000 / images/s.

  python benchmarks/bench_fid.py --out results.json
"""

from __future__ import annotations

import argparse
import datetime
import time

import jax
import jax.numpy as jnp

from bench_maskgit import parse_case
from common import report, setup_phase, write_json
from migm_jax.apps.maskgit import random_params, random_pipeline_params
from migm_jax.eval.families import Classes, MaskGITPipeline
from migm_jax.eval.features import Extractor, InceptionNet
from migm_jax.eval.inception_net import InceptionV3
from migm_jax.eval.inception_preprocess import SIZE
from migm_jax.eval.plan import Configuration, Plan
from migm_jax.eval.run import Progress, compile_programs, run_batch
from migm_jax.eval.stats import Accumulator, check_batch_size, on_mesh
from migm_jax.models.layers import attention_for
from migm_jax.models.maskgit import MaskTransformerConfig
from migm_jax.models.shortcut import MaskGITShortcutConfig
from migm_jax.models.vqgan import VQGANConfig
from migm_jax.sampling.maskgit import MaskGITModels, MaskGITSampling
from migm_jax.sharding import make_mesh, replicated

CASES = ["shortcut:32:12", "vanilla:32"]
FULL_RUN = 50_000  # samples of one FID configuration


def configuration(case: str) -> Configuration:
    mode, steps, budget = parse_case(case)
    return Configuration(mode, steps, budget or steps, MaskGITSampling(steps=steps, mode=mode, budget=budget))


def time_case(pipeline: MaskGITPipeline, extractor: Extractor, c: Configuration, batch: int, repeats: int) -> dict:
    """Compile (the programs, then the first batch), then `repeats` timed batches of the CLI's loop body."""
    plan = Plan(batch * (repeats + 1), 1, batch)
    progress, key = Progress(Accumulator(extractor.net.feature_dim)), jax.random.PRNGKey(0)
    t0 = time.perf_counter()
    with jax.log_compiles():  # logs each program compiled and its compile time: where a slow first batch goes
        programs = compile_programs(pipeline, c, plan)
        run_batch(0, key, pipeline, programs, extractor, plan, progress)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    sampling = sum(run_batch(j, key, pipeline, programs, extractor, plan, progress) for j in range(1, repeats + 1))
    batch_s = (time.perf_counter() - t0) / repeats
    return dict(batch=batch, mode=c.mode, steps=c.steps, budget=c.budget, compile_s=compile_s, batch_s=batch_s,
                sample_decode_s=sampling / repeats, images_per_s=batch / batch_s,
                minutes_50k=FULL_RUN * batch_s / batch / 60)


def print_table(rows: list[dict]) -> None:
    print(f"{'batch':>5} {'config':<20} {'batch s':>8} {'sample+decode s':>15} {'images/s':>9} {'50k min':>8} "
          f"{'compile s':>9}")
    for r in rows:
        name = f"{r['mode']} N={r['steps']}" + (f" B={r['budget']}" if r["mode"] != "vanilla" else "")
        print(f"{r['batch']:>5} {name:<20} {r['batch_s']:>8.3f} {r['sample_decode_s']:>15.3f} "
              f"{r['images_per_s']:>9.1f} {r['minutes_50k']:>8.1f} {r['compile_s']:>9.1f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny MaskGIT, batch 2, steps 4, CPU-friendly")
    p.add_argument("--batches", type=int, nargs="+", default=[64, 128])
    p.add_argument("--cases", nargs="+", default=CASES, help="mode:steps[:budget]")
    p.add_argument("--repeats", type=int, default=3, help="timed batches after the compiling one")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="as the fid command's --dtype")
    p.add_argument("--attention", default="auto", choices=["auto", "cudnn", "xla", "exact"],
                   help="as the fid command's --attention (auto: cudnn on a GPU in bfloat16, else exact)")
    p.add_argument("--out", help="write the results as JSON")
    args = p.parse_args()
    if args.quick:
        t = MaskTransformerConfig(hidden=32, depth=1, heads=2, mlp_dim=64, codebook_size=16, grid=4)
        s = MaskGITShortcutConfig(hidden=32, heads=2)
        v = VQGANConfig(embed_dim=4, n_embed=16, z_channels=8, ch=32, ch_mult=(1, 1, 2), num_res_blocks=1,
                        attn_resolutions=(), resolution=16, in_channels=3, out_ch=3)
        image_size, batches, cases, repeats = 16, [2], ["shortcut:4:2", "vanilla:4"], 1
    else:
        t, s, v = MaskTransformerConfig.preset("base"), MaskGITShortcutConfig(), VQGANConfig.f16_1024()
        image_size, batches, cases, repeats = 512, args.batches, args.cases, args.repeats
    mesh = make_mesh()
    for b in batches:
        check_batch_size(b, jax.device_count())
    attention = attention_for(args.attention, args.dtype, jax.default_backend())
    models = MaskGITModels(t, s, v, dtype=args.dtype, attention_impl=attention)  # as the fid command builds them
    with setup_phase("random MaskGIT, shortcut and VQGAN params, replicated on the mesh"):
        params = jax.device_put(random_pipeline_params(t, s, v, 0), replicated(mesh))  # host arrays, placed once
        pipeline = MaskGITPipeline(models, jax.block_until_ready(params), mesh, Classes(t.nclass))
    with setup_phase("random Inception-v3 params, replicated on the mesh"):
        inception = random_params(lambda: InceptionV3().init(jax.random.PRNGKey(1), jnp.zeros((1, SIZE, SIZE, 3))), 3)
        extractor = on_mesh(Extractor(InceptionNet("torch-fidelity"), inception), mesh)
        jax.block_until_ready(extractor.params)
    meta = dict(device=jax.devices()[0].device_kind, devices=jax.device_count(), dtype=args.dtype, attention=attention,
                date=datetime.date.today().isoformat(), jax=jax.__version__)
    rows = []
    for b in batches:
        for case in cases:
            print(f"timing {case} at batch {b} (the first batch compiles)", flush=True)
            rows.append(time_case(pipeline, extractor, configuration(case), b, repeats))
            print_table(rows[-1:])
            if args.out:  # after every row, so a run cut short keeps what it measured
                write_json(dict(meta, rows=rows), args.out)
    print_table(rows)
    report(dict(meta, rows=rows), args.out)


if __name__ == "__main__":
    main()
