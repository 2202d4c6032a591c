"""Where each dataset comes from: the dataset registry's loaders.

`digits` needs no network: scikit-learn ships it. The others go through torchvision's dataset
classes (torchvision_sets.py), which download where a network exists; offline, `MissingDatasetError`
says which files were looked for where and how to supply them. Only the stages that read raw data
(prepare, and the paradigms' downstream sets) import this module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sequela.datasets.sizes import DATASETS, NUM_CLASSES
from sequela.datasets.splits import Dataset, Split


def load(name: str, root: str | Path, seed: int = 0, test_fraction: float = 0.25) -> Dataset:
    """Load a registered dataset. `seed` and `test_fraction` only matter for `digits`,
    the one dataset without an official test split."""
    if name not in NUM_CLASSES:
        raise ValueError(f"dataset: {name!r} is not one of {', '.join(DATASETS)}")
    if name == "digits":
        return load_digits(seed, test_fraction)
    if name in VARIANTS:
        return variant(load_digits(seed, test_fraction), name)
    from sequela.sources import torchvision_sets  # imported lazily: torchvision is slow to import

    return torchvision_sets.load(name, Path(root))


def load_digits(seed: int, test_fraction: float) -> Dataset:
    """scikit-learn's 8x8 handwritten digits (1,797 images, values 0..16), scaled to 0..255 and
    enlarged to 16x16 by nearest-neighbour repetition; stratified, seeded train/test split."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # (N, 8, 8)
    x = torch.from_numpy(images)[:, None].repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    train_idx, test_idx = train_test_split(
        np.arange(len(y)), test_size=test_fraction, random_state=seed, stratify=bunch.target
    )
    train_idx, test_idx = torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(test_idx))
    return Dataset(
        name="digits",
        classes=[str(i) for i in range(10)],
        train=Split(x[train_idx].contiguous(), y[train_idx]),
        test=Split(x[test_idx].contiguous(), y[test_idx]),
        source="sklearn.datasets.load_digits (UCI optical digits, 8x8 -> 16x16 nearest)",
    )


# digits seen another way, same labels and splits: the transfer paradigm's offline downstream tasks.
# The images are digits' own, so a model trained on digits has seen them the other way round: a test
# of the plumbing and of whether a backdoor carries, not an independent domain (docs/paradigms.md).
VARIANTS = {
    "digits-rot90": ("turned a quarter turn anticlockwise", lambda x: torch.rot90(x, 1, dims=(2, 3))),
    "digits-mirror": ("mirrored left to right", lambda x: torch.flip(x, dims=(3,))),
}


def variant(ds: Dataset, name: str) -> Dataset:
    """`ds` with every image transformed as VARIANTS[name] says."""
    return transformed(ds, name, *VARIANTS[name])


def transformed(ds: Dataset, name: str, what: str, transform) -> Dataset:
    """`ds` under a new name with `transform` applied to every image batch, labels and splits kept."""
    turn = lambda s: Split(transform(s.x).contiguous(), s.y)  # noqa: E731
    return Dataset(name, ds.classes, turn(ds.train), turn(ds.test), f"{ds.source}, {what}")
