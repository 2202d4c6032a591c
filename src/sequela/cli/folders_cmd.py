"""sequela folders: one split of a registered dataset, or a stratified seeded share of it, written as
an image folder or a .npz, the forms `sequela defend` reads.

    sequela folders cifar10 --split train --fraction 0.05 --seed 0 --out clean/
    sequela folders cifar10 --split test --format npz --out test.npz

The dataset comes through the pipeline's loaders (loaders.load: torchvision's classes under --root,
scikit-learn's digits with its train/test split at the pipeline's default seed 0 and test share
0.25). Of each class's n images, round(--fraction x n) are drawn with --seed, at least one. A
folder holds <class:02d>/<row:06d>.png, rows in the split's order; a .npz holds x (uint8, N x H x W
x C) and y. Nothing is written unless the whole output is; an existing --out is refused unless
--force is given.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from sequela.pipeline.errors import ConfigError, StageError

FORMATS = ("folder", "npz")
SPLITS = ("train", "test")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="sequela folders", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("dataset", help="a registered dataset: digits, mnist, cifar10, gtsrb, ...")
    p.add_argument("--split", default="train", help="train or test")
    p.add_argument("--fraction", type=float, default=1.0, help="of each class, in (0, 1] (default 1: all)")
    p.add_argument("--seed", type=int, default=0, help="the draw's seed")
    p.add_argument("--format", default=None, help="folder or npz (default: npz where --out ends in .npz)")
    p.add_argument("--root", type=Path, default=Path("data/raw"), help="where torchvision's files are")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    return p.parse_args(argv)


def check(args: argparse.Namespace) -> str:
    """Every option checked before the dataset is read; returns the output format."""
    from sequela.cli.defend import check_out
    from sequela.datasets.sizes import DATASETS

    check_out(args.out, args.force)
    if args.dataset not in DATASETS:
        raise StageError(f"dataset {args.dataset!r} is not allowed; allowed: {', '.join(DATASETS)}")
    if args.split not in SPLITS:
        raise StageError(f"--split {args.split!r} is not allowed; allowed: {', '.join(SPLITS)}")
    if not 0 < args.fraction <= 1:
        raise StageError(f"--fraction {args.fraction} is not allowed; allowed: a share in (0, 1]")
    form = args.format or ("npz" if args.out.suffix == ".npz" else "folder")
    if form not in FORMATS:
        raise StageError(f"--format {args.format!r} is not allowed; allowed: {', '.join(FORMATS)}")
    if (form == "npz") != (args.out.suffix == ".npz"):
        raise StageError(
            f"--out {args.out}: a {form} "
            + ("is written to a path ending in .npz" if form == "npz" else "is written to a path not ending in .npz")
        )
    return form


def write(args: argparse.Namespace, form: str) -> tuple[int, int]:
    """The drawn rows under --out; returns (images, classes present)."""
    from sequela import folders
    from sequela.sources import loaders

    ds = loaders.load(args.dataset, args.root)
    split = ds.train if args.split == "train" else ds.test
    if not len(split):
        raise StageError(f"{args.dataset} has no {args.split} split")
    drawn = split.subset(folders.stratified_rows(split.y, args.fraction, args.seed))
    staging = args.out.with_name(args.out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True) if staging.is_dir() else staging.unlink(missing_ok=True)
    try:
        if form == "npz":
            folders.write_npz(drawn, staging)
        else:
            folders.write_folder(drawn, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True) if staging.is_dir() else staging.unlink(missing_ok=True)
        raise
    if args.out.exists():  # --force, checked before any work
        shutil.rmtree(args.out) if args.out.is_dir() else args.out.unlink()
    staging.rename(args.out)
    return len(drawn), len(drawn.y.unique())


def main(argv: list[str]) -> int:
    args = parse(argv)
    try:
        form = check(args)
        images, classes = write(args, form)
    except (StageError, ConfigError) as err:
        print(f"error: sequela folders: {err}", file=sys.stderr)
        return 2
    drawn = "all of each class" if args.fraction == 1 else f"{args.fraction:g} of each class, seed {args.seed}"
    print(
        f"{args.out}: {images} images of {args.dataset} {args.split} ({classes} classes, {drawn}), "
        f"as {'a .npz' if form == 'npz' else 'an image folder'}"
    )
    return 0
