"""Base-model training step time (GPU; `--quick` for a tiny CPU check): where a demo training step goes.

For a base-model config (default: configs/fashion_transformer.py) it times, after compilation,
  * `step`: the jitted train step alone on one batch already on device (forward, backward, AdamW, EMA),
  * `step+data`: the step as `train.py` runs it, reading each batch from the task's in-memory source,
  * `step+data+sync`: that plus fetching each step's metrics (the loop's one host sync per step),
for each attention implementation given; the last is what `train.py` measures in metrics.jsonl.

  python benchmarks/bench_pretrain.py --set tokenizer=migm_jax/assets/demo/maskgit --attention none cudnn
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import time

import jax

from migm_jax.sharding import make_mesh
from migm_jax.training.config import load_config
from migm_jax.training.loop import build_task


def time_loop(run_one, steps: int) -> float:
    """Milliseconds per call of run_one(i) over `steps` calls, after two untimed ones; waits for the last."""
    out = None
    for i in range(2):
        out = run_one(i)
    jax.block_until_ready(out)
    t0 = time.perf_counter()
    for i in range(steps):
        out = run_one(i + 2)
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) / steps * 1e3


def bench(cfg, steps: int) -> dict:
    task = build_task(cfg, make_mesh())
    state = task.init_state(jax.random.PRNGKey(cfg.seed))
    batch = task.source.batch(0)
    m0 = jax.numpy.int32(0)
    t0 = time.perf_counter()
    state, metrics = task._train_step(state, batch, m0)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - t0
    holder = {"state": state}

    def device_only(i):
        holder["state"], out = task._train_step(holder["state"], batch, m0)
        return out

    def with_data(i):
        holder["state"], out = task.train_step(holder["state"], i)
        return out

    def with_sync(i):
        return jax.device_get(with_data(i))

    return {"compile_s": compile_s, "step_ms": time_loop(device_only, steps),
            "step_data_ms": time_loop(with_data, steps), "step_data_sync_ms": time_loop(with_sync, steps)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/fashion_transformer.py")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    p.add_argument("--attention", nargs="+", default=["none"], help="none (exact XLA) | cudnn | xla")
    p.add_argument("--steps", type=int, default=50, help="timed steps per measurement")
    p.add_argument("--quick", action="store_true", help="tiny batch, few images: a CPU check of the script")
    p.add_argument("--out", help="write the results as JSON")
    args = p.parse_args()
    overrides = list(args.set) + ["render_images=512", "val_batches=1"]
    if args.quick:
        overrides += ["batch_size=8", "render_images=64"]
        args.steps = 2
    meta = {"device": jax.devices()[0].device_kind, "jax_version": jax.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    rows = []
    for attention in args.attention:
        impl = None if attention == "none" else attention
        cfg = dataclasses.replace(load_config(args.config, overrides), attention_impl=impl)
        row = {"config": args.config, "attention": attention, "batch_size": cfg.batch_size}
        try:
            row.update(bench(cfg, args.steps))
            print(f"attention {attention:>5}: compile {row['compile_s']:.1f} s; ms per step: device {row['step_ms']:.2f}, "
                  f"+data {row['step_data_ms']:.2f}, +metrics sync {row['step_data_sync_ms']:.2f} "
                  f"({cfg.batch_size / row['step_data_sync_ms'] * 1e3:.0f} images/s)")
        except (NotImplementedError, ValueError) as e:  # e.g. a fused attention that does not take this length
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
            print(f"attention {attention:>5}: not run ({row['error']})")
        rows.append(row)
        if args.out:  # after every row, so a run cut short keeps what it measured
            with open(args.out, "w") as f:
                json.dump({"results": rows, **meta}, f, indent=2)


if __name__ == "__main__":
    main()
