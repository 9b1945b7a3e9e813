"""Writes a split of the synthetic shapes dataset, or a PNG grid of its first 40 images to look at.

  python -m migm_jax.synthetic --out data/shapes --split train --images 50000
  python -m migm_jax.synthetic --out data/shapes --split test --images 10000
  python -m migm_jax.synthetic --split train --grid shapes_train.png

The grid has one row of the 10 classes per 10 images (label = index % 10).
"""

from __future__ import annotations

import argparse
import sys

from migm_jax.images import make_grid, save_png
from migm_jax.synthetic.dataset import write_split
from migm_jax.synthetic.render import CLASS_NAMES, render_batch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="dataset root (data_dir) to write the split into")
    ap.add_argument("--split", default="train")
    ap.add_argument("--images", type=int, help="images to write (with --out)")
    ap.add_argument("--images-per-shard", type=int, default=4096)
    ap.add_argument("--grid", metavar="PATH.png", help="save the split's first 40 images as a PNG grid")
    args = ap.parse_args(argv)
    try:
        if args.out is None and args.grid is None:
            raise ValueError("nothing to do: give --out DIR --images N, or --grid PATH.png")
        if (args.out is None) != (args.images is None):
            raise ValueError("--out and --images go together")
        if args.grid:
            images, _ = render_batch(range(40), args.split)
            save_png(make_grid(images, nrow=len(CLASS_NAMES)), args.grid)
            print(f"wrote {args.grid} (columns: {', '.join(CLASS_NAMES)})")
        if args.out:
            path = write_split(args.out, args.split, args.images, args.images_per_shard)
            print(f"wrote {args.images} images ({args.split}) to {path}")
    except (FileNotFoundError, ImportError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
