"""A seeded draw of rows from a .npz of images (x, y), so that a check evaluates fewer images.

    python benchmarks/own_model/draw.py triggered.npz --rows 2000 --seed 0 --out triggered-2000.npz

Rows keep their order in the file. Fewer rows than asked: all of them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("npz", type=Path)
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    with np.load(args.npz) as f:
        x, y = f["x"], f["y"]
    kept = np.sort(np.random.default_rng(args.seed).permutation(len(y))[: args.rows])
    with open(args.out, "wb") as handle:
        np.savez(handle, x=x[kept], y=y[kept])
    print(f"{args.out}: {len(kept)} of {len(y)} rows")


if __name__ == "__main__":
    main()
