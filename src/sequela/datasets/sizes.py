"""What is known of each dataset before any of its files is read: classes, image side, split sizes.

params.yaml is checked against these before any work starts (a target label out of range, a trigger
larger than the image, a defender's share too small for one batch), so a bad value fails in the
first second of a grid instead of after its first stage. The sizes are the official splits that
torchvision's classes load (STL-10: its labelled splits only); `loaders.load` produces exactly these.
"""

from __future__ import annotations

import math

NUM_CLASSES = {
    "digits": 10,
    "digits-rot90": 10,
    "digits-mirror": 10,
    "mnist": 10,
    "fashion-mnist": 10,
    "cifar10": 10,
    "cifar100": 100,
    "gtsrb": 43,
    "svhn": 10,
    "stl10": 10,
}
DATASETS = tuple(NUM_CLASSES)

# The sets without an official test split: `data.test_fraction` carves one. `digits-rot90` and
# `digits-mirror` are digits turned a quarter turn and mirrored (sources.VARIANTS), built-in
# downstream tasks for the transfer paradigm's offline cells.
NO_TEST_SPLIT = ("digits", "digits-rot90", "digits-mirror")

# Side of the square images as the pipeline stores them (digits is enlarged 8 -> 16, STL-10 and
# GTSRB are resized to 32).
IMAGE_SIDE = {
    "digits": 16,
    "digits-rot90": 16,
    "digits-mirror": 16,
    "mnist": 28,
    "fashion-mnist": 28,
    "cifar10": 32,
    "cifar100": 32,
    "gtsrb": 32,
    "svhn": 32,
    "stl10": 32,
}

# (train, test) images of the official splits; digits has one pool of 1,797 that `data.test_fraction`
# splits.
SPLIT_SIZES = {
    "digits": (1797, 0),
    "digits-rot90": (1797, 0),
    "digits-mirror": (1797, 0),
    "mnist": (60000, 10000),
    "fashion-mnist": (60000, 10000),
    "cifar10": (50000, 10000),
    "cifar100": (50000, 10000),
    "gtsrb": (39209, 12630),
    "svhn": (73257, 26032),
    "stl10": (5000, 8000),
}


def carved(n: int, fraction: float) -> int:
    """How many of `n` rows `splits.carve` takes for `fraction` (scikit-learn rounds the taken share up)."""
    return math.ceil(fraction * n) if fraction > 0 else 0


def target_train_size(dataset: str, test_fraction: float, shadow_fraction: float) -> int:
    """Rows of the target model's training split after `prepare` carves off the shadow split."""
    train, _ = SPLIT_SIZES[dataset]
    if dataset in NO_TEST_SPLIT:
        train -= carved(train, test_fraction)
    return train - carved(train, shadow_fraction)


def carve_sizes(
    dataset: str, test_fraction: float, shadow_fraction: float, holdout_fraction: float
) -> dict[str, tuple[int, int]]:
    """For each data.* share, (the smaller side of the carving it drives, the rows carved), as
    `prepare` carves them: digits' test split, the shadow split, and the two membership holdouts
    (2 x holdout_fraction of the test split, then halved)."""
    train, test = SPLIT_SIZES[dataset]
    out = {}
    if dataset in NO_TEST_SPLIT:
        test = carved(train, test_fraction)
        out["data.test_fraction"] = (min(test, train - test), train)
        train -= test
    shadow = carved(train, shadow_fraction)
    out["data.shadow_fraction"] = (min(shadow, train - shadow), train)
    held = carved(test, min(1.0, 2 * holdout_fraction))
    half = carved(held, 0.5)
    out["data.holdout_fraction"] = (min(test - held, half, held - half), test)
    return out
