"""Loading params.yaml and the rules that span its sections.

`load_params` reads the file and applies the checks every stage needs: the device, the grid, the
data splits, and the rules that tie one section to the datasets of another (the target label exists
in every dataset, the poison rate leaves rows to poison, the defender's clean share holds a batch).
Each part of the pipeline (an attack, a defense, a sweep, a sequela measure, a paradigm) checks its
own section itself, in its own module, and `sequela.validate` runs every one of those checks. This
module imports no registry, so a stage's imports stay the modules it uses.

A bad value stops the stage with one line that names the key, the value and what is allowed (exit
status 2, no traceback).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from sequela.datasets.sizes import (
    DATASETS,
    IMAGE_SIDE,
    NO_TEST_SPLIT,
    NUM_CLASSES,
    carve_sizes,
    target_train_size,
)
from sequela.pipeline.checker import Checker, fail, is_int
from sequela.pipeline.errors import ConfigError
from sequela.training.recipe import recipe_key

DEVICE = re.compile(r"(auto|cpu|mps|cuda(:\d+)?)")


def load_params(path: str | Path = "params.yaml") -> dict:
    """params.yaml, with the checks that span sections applied."""
    params = read_params(path)
    check_common(Checker(params))
    return params


def read_params(path: str | Path = "params.yaml") -> Any:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; run the stage from the project root")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or "not valid YAML"
        raise ConfigError(f"{path}: cannot be parsed{where}: {problem}") from None


def check_common(c: Checker) -> None:
    _device(c)
    _grid(c)
    _data(c)
    for dataset in c.get("grid.datasets"):
        c.integer(f"{recipe_key(c.params, dataset, c)}.batch_size")
    _attacker_rules(c)
    _defender_rules(c)
    c.integer("curves.eval_n")


def _device(c: Checker) -> None:
    device = c.get("device")
    if not isinstance(device, str) or not DEVICE.fullmatch(device):
        fail("device", device, "auto, cpu, mps, cuda or cuda:<index>")
    if device == "mps":
        import torch

        if not torch.backends.mps.is_available():
            fail("device", device, "auto or cpu (Apple's MPS is not available on this machine)")
    if device.startswith("cuda"):
        import torch

        count = torch.cuda.device_count()
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            fail("device", device, f"auto or cpu (this machine has {count} CUDA device(s))")


def _grid(c: Checker) -> None:
    seeds = c.get("grid.seeds")
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(is_int(s) and s >= 0 for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        fail("grid.seeds", seeds, "a non-empty list of distinct non-negative integers")
    c.names("grid.datasets", DATASETS)
    for key in ("grid.attacks", "grid.defenses"):  # the registries check the names (sequela.validate)
        names = c.get(key)
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            fail(key, names, "a non-empty list of names")
        if len(set(names)) != len(names):
            fail(key, names, "a list without repeats")


def _data(c: Checker) -> None:
    root = c.get("data.root")
    if not isinstance(root, str) or not root:
        fail("data.root", root, "a folder path (relative to the project root)")
    c.integer("data.split_seed", low=0)
    c.number("data.test_fraction", 0.0, 1.0)
    # The shadow model and the membership holdouts are always built (every cell's sequela needs them).
    c.number("data.shadow_fraction", 0.0, 1.0)
    c.number("data.holdout_fraction", 0.0, 0.5)
    # Every split is a stratified carving, which needs each side to hold at least one image per class.
    for ds in c.get("grid.datasets"):
        for key, (smaller, n) in carve_sizes(
            ds, c.get("data.test_fraction"), c.get("data.shadow_fraction"), c.get("data.holdout_fraction")
        ).items():
            if ds not in NO_TEST_SPLIT and key == "data.test_fraction":
                continue  # only digits has no official test split to keep
            if smaller < NUM_CLASSES[ds]:
                fail(
                    key,
                    c.get(key),
                    f"a share that leaves every split of {ds} ({n} images) at least one "
                    f"image per class ({NUM_CLASSES[ds]}); this gives a split of {smaller}",
                )


def _attacker_rules(c: Checker) -> None:
    """The target label and the poison rate against every dataset of the grid."""
    rate = c.number("attack.poison_rate", 0.0, 1.0)
    target = c.get("attack.target")
    for ds in c.get("grid.datasets"):
        n = NUM_CLASSES[ds]
        if not is_int(target) or not 0 <= target < n:
            fail("attack.target", target, f"an integer class label in [0, {n - 1}] for dataset {ds}")
        check_poison_rate(c, "attack.poison_rate", rate, ds)


def check_poison_rate(c: Checker, key: str, rate: float, dataset: str, shown: Any = None) -> None:
    """All-to-one poisons only non-target images: a balanced set has (1 - 1/classes) of them.
    `shown` is the value as the file spells it, where that is not `rate` itself."""
    train, n = train_size(c, dataset), NUM_CLASSES[dataset]
    if round(rate * train) < 1 or rate > 1 - 1 / n:
        fail(
            key,
            rate if shown is None else shown,
            f"at least one of {dataset}'s {train} training images and at most {1 - 1 / n:.3f} (its non-target share)",
        )


def _defender_rules(c: Checker) -> None:
    """The defender's clean share holds at least one of its batches, in every dataset of the grid."""
    c.integer("defense.epochs")
    fraction = c.number("defense.clean_fraction", 0.0, 1.0, high_open=False)
    batch = c.get("defense.batch_size")
    if batch is not None and (not is_int(batch) or batch < 1):
        fail("defense.batch_size", batch, "null (the recipe's batch size) or a positive integer")
    for ds in c.get("grid.datasets"):
        check_clean_share(c, "defense.clean_fraction", fraction, ds)


def defender_batch(c: Checker, dataset: str) -> int:
    return c.get("defense.batch_size") or c.get(f"{recipe_key(c.params, dataset, c)}.batch_size")


def check_clean_share(c: Checker, key: str, fraction: float, dataset: str, shown: Any = None) -> None:
    """splits.clean_subset draws round(fraction * n) rows, at least one: they must hold one batch."""
    n_clean, need = max(1, round(fraction * train_size(c, dataset))), defender_batch(c, dataset)
    if n_clean < need:
        fail(
            key,
            fraction if shown is None else shown,
            f"a share of {dataset}'s training split that holds one "
            f"defender batch of {need} (this gives {n_clean} images)",
        )


def smallest_side(c: Checker) -> tuple[int, str]:
    """The smallest image side among the grid's datasets, and that dataset: every trigger must fit it."""
    smallest = min(c.get("grid.datasets"), key=IMAGE_SIDE.get)
    return IMAGE_SIDE[smallest], smallest


def train_size(c: Checker, dataset: str) -> int:
    """From the official split sizes: a smaller copy of a dataset gets smaller splits than this."""
    return target_train_size(dataset, c.get("data.test_fraction"), c.get("data.shadow_fraction"))
