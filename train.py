#!/usr/bin/env python
"""Train a shortcut model (MaskGIT or Lumina-DiMOO) on teacher trajectories, or a base model from scratch
on an image dataset (VQGAN / VQModel tokenizer, MaskGIT transformer, text-to-image LLaDA, feature
classifier); resumes from --workdir.

  python train.py --config configs/maskgit_imagenet.py --workdir runs/maskgit --set lr=3e-4
  python train.py --config configs/smoke.py --workdir /tmp/smoke --set total_steps=20
  python train.py --config configs/maskgit_imagenet.py --workdir runs/maskgit --export   # EMA -> weights dir + .pth
  python train.py --config configs/fashion_vqgan.py --workdir runs/fashion_vqgan             # base models: see README

Writes <workdir>/metrics.jsonl (one JSON object per optimizer step) and <workdir>/checkpoints/.
SIGTERM or Ctrl-C stops after the step in progress and checkpoints it (exit status 128 + the signal
number: 143, 130); the same command resumes there. Several processes (hosts) run the same command, each
with its own --process-id; under SLURM or Open MPI no launch setting is needed, on a TPU pod slice
pass --multihost. Two CPU processes on one machine:

  python train.py --config configs/smoke.py --workdir /tmp/smoke2 --coordinator 127.0.0.1:12355 --num-processes 2 --process-id 0 &
  python train.py --config configs/smoke.py --workdir /tmp/smoke2 --coordinator 127.0.0.1:12355 --num-processes 2 --process-id 1
"""

import argparse
import os
import sys

from migm_jax.launch import add_launch_args, error_line, initialize, leave


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="Python config file defining get_config()")
    p.add_argument("--workdir", required=True, help="checkpoints, metrics.jsonl and exports go here")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set lr=3e-4 --set teacher.hidden=64 (repeatable)")
    p.add_argument("--export", nargs="?", const="", metavar="DIR",
                   help="instead of training, export the latest EMA model to DIR (default <workdir>/export)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_launch_args(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from migm_jax.files import check_output_dir
    from migm_jax.training.config import load_config

    try:
        cfg = load_config(args.config, args.overrides)
        initialize(args)
        from migm_jax.training import loop

        if args.export is not None:
            out = check_output_dir(args.export or os.path.join(args.workdir, "export"), "--export")
            paths = loop.export(cfg, args.workdir, out)
            print("wrote " + " and ".join(paths.values()))
        else:
            stopped = loop.train(cfg, args.workdir, progress=not args.no_progress)
            if stopped:
                # 128 + signal number, the status of a process killed by that signal (143 for SIGTERM):
                # a run stopped early must not read as finished. Exit 0 would mark a Kubernetes Job
                # Succeeded (no restart) and let `train.py && train.py --export` export a half-trained
                # model; 143 is what schedulers and restart policies (SLURM, Kubernetes, torchrun)
                # treat as "terminated, rerun"; the checkpoint makes the rerun continue at this step.
                return 128 + stopped
    except (ValueError, OSError, ImportError) as e:  # ConfigError and CheckpointError are ValueErrors
        print(f"error: {error_line(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    leave(main())
