"""The Inception-v3 FID commands: reference statistics of an image folder, and FID / IS of the samplers.

  python -m migm_jax.eval ref-stats --images imagenet_val_512/ --inception weights-inception-2015-12-05-6726825d.pth --out ref.npz
  python -m migm_jax.eval fid --weights W --inception weights-inception-2015-12-05-6726825d.pth --ref-stats ref.npz \\
      --steps 32 --budgets 8 9 12 --out results.json --plot pareto.png

Generated and reference images go through the same preprocessing of the chosen flavor (default torch-fidelity,
what the paper's numbers use); `fid` continues an interrupted run when given the same arguments again.
Several processes (hosts) run the same command, each with its own --process-id (launch settings: see
`python -m migm_jax.eval fid --help`); the feature moments are reduced over all of them.
"""

from __future__ import annotations

import argparse
import os

import jax

from migm_jax.eval.cli import add_compute_args, add_sampler_args, attention_impl, check_run_args, print_table, shared_sampling
from migm_jax.eval.families import FAMILIES
from migm_jax.eval.features import inception_extractor
from migm_jax.eval.fid_eval import MODES, FIDSettings, evaluate_fid
from migm_jax.eval.inception import WEIGHTS
from migm_jax.eval.inception_preprocess import FLAVORS
from migm_jax.eval.plan import check_budgets
from migm_jax.eval.plot import pareto_plot
from migm_jax.eval.refstats import (check_ref_stats_flavor, image_list, read_ref_stats, reference_statistics,
                                    write_ref_stats)
from migm_jax.eval.stats import check_batch_size, on_mesh, summary
from migm_jax.files import check_output_file
from migm_jax.launch import add_launch_args
from migm_jax.sharding import make_mesh
from migm_jax.weights import read_config


def add_inception_args(p: argparse.ArgumentParser, batch_size: int) -> None:
    p.add_argument("--inception", required=True, help="FID Inception weights: torch-fidelity's "
                   f"{WEIGHTS['torch-fidelity'][0]} or pytorch-fid's {WEIGHTS['pytorch-fid'][0]}")
    p.add_argument("--flavor", default="torch-fidelity", choices=FLAVORS,
                   help="whose preprocessing (resize, normalisation) the features follow (default torch-fidelity)")
    p.add_argument("--batch-size", type=int, default=batch_size, help="images per batch, a multiple of the devices")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m migm_jax.eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    ref = sub.add_parser("ref-stats", help="FID statistics of an image folder or a TFDS split",
                         description="FID reference statistics (mu, sigma of the Inception pool features) of every "
                                     "image below a folder, in sorted order, or of every record of a prepared TFDS "
                                     "split, in record order; converted to RGB.")
    ref.add_argument("--images", required=True, help="folder of png / jpg / jpeg / webp / bmp images of one size "
                     "(searched recursively), or tfds:NAME[:VERSION]/SPLIT (array_record files; its 'image' feature)")
    ref.add_argument("--tfds-data-dir", help="TFDS data_dir of a tfds: --images (default: TFDS's own)")
    ref.add_argument("--resize-crop", type=int, metavar="S", help="first resize the shorter side to S (bilinear) "
                     "and center-crop SxS, as the original evaluation's torchvision Resize + CenterCrop")
    ref.add_argument("--minmax", action="store_true", help="min-max stretch each image to [0, 255] first, as the "
                     "original does to real and generated images alike (the fid command does it to the samples)")
    add_inception_args(ref, 64)
    ref.add_argument("--out", required=True, help="statistics .npz to write (mu, sigma, num_images; flavor, "
                     "resize_crop, minmax: how they were made; fid refuses statistics of another flavor)")
    add_launch_args(ref)
    fid = sub.add_parser("fid", help="FID and Inception Score of each sampler configuration",
                         description="FID against reference statistics, Inception Score and seconds per image of "
                                     "vanilla N and, per budget B, fewer_steps / reuse / shortcut; rerunning the same "
                                     "command continues an interrupted run.")
    fid.add_argument("--weights", required=True, help="'maskgit' weights dir (with a shortcut for --mode shortcut)")
    fid.add_argument("--ref-stats", required=True, help="reference statistics (.npz of ref-stats or pytorch-fid, "
                     "or torch-fidelity's cached statistics)")
    add_inception_args(fid, 64)
    fid.add_argument("--num-samples", type=int, default=50000, help="images per configuration and seed (>= 2)")
    fid.add_argument("--seeds", type=int, default=1, help="seeds 0..K-1 per configuration")
    add_sampler_args(fid, dimoo=False)
    fid.add_argument("--budgets", type=int, nargs="+", help="full steps B, 2..N (default: those of 4 6 8 below N)")
    fid.add_argument("--mode", nargs="+", choices=MODES, default=list(MODES), help="configurations to run "
                     "(vanilla runs once, with N steps; default: all)")
    add_compute_args(fid)
    fid.add_argument("--out", required=True, help="results JSON to write (and to continue, when it exists)")
    fid.add_argument("--plot", help="Pareto plot PNG to write")
    add_launch_args(fid)
    return p.parse_args(argv)


def check_inception_file(path: str, flavor: str) -> None:
    if not os.path.isfile(path):
        name, url = WEIGHTS[flavor]
        raise ValueError(f"--inception: no weights file at {path}; download {flavor}'s {name} from {url}")


def run_ref_stats(args: argparse.Namespace) -> None:
    """Checks the arguments and the folder, computes the statistics, writes them."""
    check_output_file(args.out, (".npz",), "--out", "a statistics .npz file")
    check_inception_file(args.inception, args.flavor)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.resize_crop is not None and args.resize_crop < 1:
        raise ValueError(f"--resize-crop must be a size in pixels >= 1, got {args.resize_crop}")
    check_batch_size(args.batch_size, jax.device_count())
    images = image_list(args.images, args.tfds_data_dir)
    mesh = make_mesh()
    extractor = on_mesh(inception_extractor(args.inception, args.flavor), mesh)
    stats = reference_statistics(images, extractor, mesh, args.batch_size, args.resize_crop, args.minmax)
    write_ref_stats(args.out, stats, args.flavor, args.resize_crop, args.minmax)
    print(f"wrote {args.out} ({stats.count} images)")


def run_fid(args: argparse.Namespace) -> None:
    """Checks the arguments and files, evaluates (or continues), writes the JSON [and plot], prints the table."""
    budget_modes = set(args.mode) - {"vanilla"}
    check_run_args(args, needs_budgets=bool(budget_modes))
    check_inception_file(args.inception, args.flavor)
    read_ref_stats(args.ref_stats)
    check_ref_stats_flavor(args.ref_stats, args.flavor)
    if not os.path.isdir(args.weights):
        raise ValueError(f"--weights: no weights directory at {args.weights}")
    family = FAMILIES["maskgit"]
    sampling = shared_sampling(family, read_config(args.weights)[1], args)
    budgets = check_budgets(args.budgets, sampling.steps, family.budgets(sampling.steps)) if budget_modes else ()
    settings = FIDSettings(args.weights, args.inception, args.ref_stats, sampling, budgets, tuple(args.mode),
                           args.flavor, args.num_samples, args.seeds, args.batch_size, args.dtype,
                           attention_impl(args.attention, args.dtype))
    result = evaluate_fid(settings, args.out)
    print(f"wrote {args.out}")
    if args.plot:
        pareto_plot(result, args.plot)
        print(f"wrote {args.plot}")
    print_table(summary(result["results"]))
