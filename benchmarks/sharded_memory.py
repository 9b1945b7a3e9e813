"""Per-device memory of the sharded Lumina-DiMOO sampler at the real 8B size, read from XLA's memory
analysis of the compiled program: compile only, nothing is allocated or run, so it works on fake CPU
devices and tells whether the parameters + one image's activations fit a 16-32 GB device.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \
      python benchmarks/sharded_memory.py --fsdp 1 4 8 --size 1024

Each mesh is (data 1, fsdp K, tensor 1): the params are split K ways by `migm_jax.sharding` rules and
the batch (one image per device) over the fsdp axis. Attention is XLA's (the CPU path materialises the
(heads, L, L) scores; cuDNN flash attention on GPU does not), so the activation term is an upper bound
for GPUs.
"""

from __future__ import annotations

import argparse
import datetime
import json

import jax
import jax.numpy as jnp

from common import report
from migm_jax.convert.dimoo import llada_abstract_params
from migm_jax.models.dimoo_shortcut import DiMOOShortcut, DiMOOShortcutConfig
from migm_jax.models.llada import LLaDAConfig
from migm_jax.sampling.dimoo import DiMOOModels, DiMOOSampling, build_sampler
from migm_jax.sampling.dimoo_prompts import PromptBatch, TokenLayout
from migm_jax.sharding import batch_sharding, make_mesh, param_shardings, replicated

UNCOND_IDS = [126332, 36289, 289, 3972, 4631, 297, 268, 3019, 12166, 13, 126333, 126334, 126351, 126335]


def abstract(tree, shardings):
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fsdp", type=int, nargs="+", default=[1, 4, 8], help="devices splitting the params")
    p.add_argument("--size", type=int, default=1024, help="image side in pixels")
    p.add_argument("--budget", type=int, default=14, help="shortcut mode with this budget of N=64 steps")
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--out", help="write the results as JSON")
    args = p.parse_args()
    cfg, layout = LLaDAConfig.dimoo_8b(), TokenLayout.real()
    scfg = DiMOOShortcutConfig.from_llada(cfg)
    models = DiMOOModels(cfg, layout, scfg, dtype="bfloat16")
    sampling = DiMOOSampling(steps=64, mode="shortcut", budget=args.budget)
    feat = jnp.zeros((1, 2, cfg.d_model))
    shapes = {"llada": llada_abstract_params(cfg, jnp.bfloat16),
              "shortcut": jax.eval_shape(lambda: DiMOOShortcut(scfg).init(
                  jax.random.PRNGKey(0), feat, feat, jnp.ones((1, 2), bool), jnp.ones((1,))))["params"]}
    grid = (args.size // 16,) * 2
    rows = []
    for k in args.fsdp:
        mesh = make_mesh(1, k, 1, devices=jax.devices()[:k])
        params = abstract(shapes, param_shardings(shapes, mesh))
        batch = PromptBatch.from_ids([[1000 + i for i in range(args.prompt_len)]] * k, UNCOND_IDS, grid, layout)
        batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=batch_sharding(mesh)), batch)
        key = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=replicated(mesh))
        m = build_sampler(models, sampling, decode=False, mesh=mesh).lower(params, batch, key).compile().memory_analysis()
        gib = lambda n: n / 2**30
        row = dict(fsdp=k, size=args.size, images_per_device=1, argument_gib=gib(m.argument_size_in_bytes),
                   temp_gib=gib(m.temp_size_in_bytes), output_gib=gib(m.output_size_in_bytes),
                   total_gib=gib(m.argument_size_in_bytes + m.temp_size_in_bytes + m.output_size_in_bytes
                                 - m.alias_size_in_bytes))
        rows.append(row)
        print(json.dumps(row), flush=True)
    report(dict(date=datetime.date.today().isoformat(), jax=jax.__version__, backend=jax.default_backend(),
                mode=f"shortcut N=64 B={args.budget}", rows=rows), args.out)


if __name__ == "__main__":
    main()
