#!/usr/bin/env python
"""Train a shortcut model (MaskGIT or Lumina-DiMOO) on teacher trajectories; resumes from --workdir.

  python train.py --config configs/maskgit_imagenet.py --workdir runs/maskgit --set lr=3e-4
  python train.py --config configs/smoke.py --workdir /tmp/smoke --set total_steps=20
  python train.py --config configs/maskgit_imagenet.py --workdir runs/maskgit --export   # EMA -> weights dir + .pth

Writes <workdir>/metrics.jsonl (one JSON object per optimizer step) and <workdir>/checkpoints/.
On several hosts run the same command on every host (or pass --multihost to force
jax.distributed.initialize()).
"""

import argparse
import os
import sys

MULTIHOST_ENV = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="Python config file defining get_config()")
    p.add_argument("--workdir", required=True, help="checkpoints, metrics.jsonl and exports go here")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set lr=3e-4 --set teacher.hidden=64 (repeatable)")
    p.add_argument("--export", nargs="?", const="", metavar="DIR",
                   help="instead of training, export the latest EMA shortcut to DIR (default <workdir>/export)")
    p.add_argument("--multihost", action="store_true", help="call jax.distributed.initialize() (auto on SLURM/TPU pods "
                   "when the coordinator is set in the environment)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from migm_jax.training.config import load_config

    try:
        cfg = load_config(args.config, args.overrides)
        import jax

        if args.multihost or any(os.environ.get(v) for v in MULTIHOST_ENV):
            jax.distributed.initialize()
        from migm_jax.training import loop

        if args.export is not None:
            paths = loop.export(cfg, args.workdir, args.export or os.path.join(args.workdir, "export"))
            print(f"wrote {paths['weights']} and {paths['pth']}")
        else:
            loop.train(cfg, args.workdir, progress=not args.no_progress)
    except (ValueError, OSError, ImportError) as e:  # ConfigError and CheckpointError are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
