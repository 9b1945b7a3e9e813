"""Records the teacher's vanilla sampling trajectories into a TFDS dataset (the original makedata).

  python -m migm_jax.training.makedata --config configs/maskgit_imagenet.py --out data/maskgit --split train --images 50000 --seed 1
  python -m migm_jax.training.makedata --config configs/maskgit_imagenet.py --out data/maskgit --split val --images 1000 --seed 1001

Conditions are drawn uniformly (MaskGIT: class ids) from the seed; every image gives two
trajectories (cond, uncond). Several processes (hosts) run the same command, each with its own
--process-id (launch settings: see train.py --help); each samples and writes its share on its local
devices, then process 0 writes the metadata; the dataset is the one a single process writes.
Write the splits one after another (they share one metadata file).
"""

from __future__ import annotations

import argparse
import sys

import jax
from tqdm import tqdm

from migm_jax.launch import add_launch_args, error_line, initialize, leave
from migm_jax.memory import check_fits
from migm_jax.sharding import batch_sharding, make_mesh
from migm_jax.training.config import ConfigError, TrainConfig, load_config
from migm_jax.training.dataset import TrajectoryWriter
from migm_jax.training.step import fsdp_sharding
from migm_jax.training.trajectories import capture_fn


def capture_to_disk(family, teacher: dict, base_configs: dict, data_dir: str, split: str, images: int, seed: int,
                    batch: int, progress: bool = True, fsdp: int = 1) -> None:
    """Samples `images` images in batches of `batch` and writes their 2 * images trajectories; the
    teacher is split over `fsdp` of each process's local devices (the batch over all of them). A sampler
    that needs more memory than a device has is refused in one line before anything is written."""
    p, count = jax.process_index(), jax.process_count()
    if images % (batch * count):
        raise ConfigError(f"--images {images} must be a multiple of --batch {batch} x {count} processes")
    mesh = make_mesh(fsdp=fsdp, devices=jax.local_devices())
    if batch % mesh.size:
        raise ConfigError(f"--batch {batch} must be divisible by the {mesh.size} local devices")
    teacher = jax.device_put(teacher, fsdp_sharding(mesh, teacher))

    fn = capture_fn(family, batch, batch_sharding(mesh))
    key = jax.random.PRNGKey(seed)
    check_fits(fn.lower(teacher, key).compile(), f"sampling the trajectories of --batch {batch}",
               "use a smaller --batch, or shard the teacher over more devices with --set mesh_fsdp=N")
    writer = TrajectoryWriter(data_dir, split, 2 * images, family.steps, traj_per_shard=2 * batch,
                              process_index=p, process_count=count)
    per_process = images // batch // count
    for i in tqdm(range(per_process), desc=f"makedata {split}", unit="batch", disable=not progress):
        writer.write(jax.device_get(fn(teacher, jax.random.fold_in(key, p * per_process + i))))
    writer.close()
    if count > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices("makedata")
    if p == 0:
        writer.finalize({"family": family.name, "steps": family.steps, "configs": base_configs,
                         "splits": {split: {"images": images, "seed": seed}}})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", required=True, help="dataset root (the config's data_dir)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--images", type=int, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch", type=int, default=10, help="images per sampler call (original: 10)")
    add_launch_args(ap)
    args = ap.parse_args(argv)
    try:
        # data_dir is what training will read: it need not exist yet while the dataset is being written
        cfg: TrainConfig = load_config(args.config, [*args.overrides, "data_dir=None"])
        initialize(args)
        from migm_jax.training.loop import build_family

        family, teacher, _, base_configs, _ = build_family(cfg)
        capture_to_disk(family, teacher, base_configs, args.out, args.split, args.images, args.seed, args.batch,
                        fsdp=cfg.mesh_fsdp)
    except (ConfigError, FileNotFoundError, ImportError, ValueError) as e:
        print(f"error: {error_line(e)}", file=sys.stderr)
        return 2
    print(f"wrote {2 * args.images} trajectories ({args.split}) to {args.out}")
    return 0


if __name__ == "__main__":
    leave(main())
