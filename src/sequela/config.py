"""Reading and checking params.yaml before any work starts.

Every stage calls `load_params` first. It checks every key that any stage reads, and the rules
that tie keys together (the target label exists in every dataset of the grid, the trigger fits the
image, the defender's clean share holds at least one batch), so a typo in a sweep fails in the first
second instead of after an hour of training. A bad value stops the stage with one line that names
the key, the value and what is allowed (exit status 2, no traceback); a key that no stage reads gets
a one-line warning, so `defence.epochs` does not pass silently.
"""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from sequela.catalog import DATASETS, IMAGE_SIDE, NO_TEST_SPLIT, NUM_CLASSES, carve_sizes, target_train_size
from sequela.checker import INF, Checker, fail, is_int, is_number
from sequela.errors import ConfigError
from sequela.stage_runner import run_stage

__all__ = ["ConfigError", "Recipe", "load_params", "recipe_key", "run_stage", "validate"]


def validate(params: Any) -> list[str]:
    """Check every key the pipeline reads. Raises ConfigError on the first bad one; returns one
    warning per key that nothing reads."""
    c = Checker(params)
    _grid_and_data(c)
    _recipes(c)
    _attacks(c)
    _defenses(c)
    _sweeps_and_sequela(c)
    _paradigms(c)
    return [f"params.yaml: {key} is not a key the pipeline reads; it is ignored (a typo?)" for key in c.unread()]


DEVICE = re.compile(r"(auto|cpu|mps|cuda(:\d+)?)")


def _grid_and_data(c: Checker) -> None:
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
    seeds = c.get("grid.seeds")
    if (not isinstance(seeds, list) or not seeds or not all(is_int(s) and s >= 0 for s in seeds)
            or len(set(seeds)) != len(seeds)):
        fail("grid.seeds", seeds, "a non-empty list of distinct non-negative integers")
    from sequela.attacks import ATTACKS
    from sequela.defenses import DEFENSES

    c.names("grid.datasets", tuple(NUM_CLASSES))
    c.names("grid.attacks", tuple(ATTACKS))
    c.names("grid.defenses", tuple(DEFENSES))
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
        for key, (smaller, n) in carve_sizes(ds, c.get("data.test_fraction"), c.get("data.shadow_fraction"),
                                             c.get("data.holdout_fraction")).items():
            if ds not in NO_TEST_SPLIT and key == "data.test_fraction":
                continue  # only digits has no official test split to keep
            if smaller < NUM_CLASSES[ds]:
                fail(key, c.get(key), f"a share that leaves every split of {ds} ({n} images) at least one "
                                       f"image per class ({NUM_CLASSES[ds]}); this gives a split of {smaller}")


def _recipes(c: Checker) -> None:
    """Every recipe in the file, the unused `gpu` ones too: a broken one fails before it is used."""
    block = c.get("recipe")
    if not isinstance(block, dict):
        fail("recipe", block, "a mapping from dataset name to its training recipe")
    for dataset in c.get("grid.datasets"):
        c.get(f"recipe.{dataset}")
    for dataset in block:
        if dataset not in NUM_CLASSES:
            continue  # reported as an unread key
        recipe_key(c.params, dataset, c)  # checks `use` where the block names several recipes
        if "use" in block[dataset]:
            for name, value in block[dataset].items():
                if name != "use" and isinstance(value, dict):
                    _recipe(c, f"recipe.{dataset}.{name}")
        else:
            _recipe(c, f"recipe.{dataset}")


def _recipe(c: Checker, key: str) -> None:
    from sequela.models import ARCHITECTURES

    c.choice(f"{key}.model", tuple(ARCHITECTURES))
    c.integer(f"{key}.epochs")
    c.integer(f"{key}.batch_size")
    c.number(f"{key}.lr", 0.0, INF)
    # optional: absent, they take Recipe's defaults
    if c.get(f"{key}.momentum", None) is not None:
        c.number(f"{key}.momentum", 0.0, 1.0, low_open=False)
    if c.get(f"{key}.weight_decay", None) is not None:
        c.number(f"{key}.weight_decay", 0.0, INF, low_open=False)
    if c.get(f"{key}.crop_padding", None) is not None:
        c.integer(f"{key}.crop_padding", low=0)
    if c.get(f"{key}.flip", None) is not None:
        c.boolean(f"{key}.flip")
    if c.get(f"{key}.cpu_bf16", None) is not None:
        c.boolean(f"{key}.cpu_bf16")
    width = c.get(f"{key}.width", None)
    if width is not None and (not is_int(width) or width < 1):
        fail(f"{key}.width", width, "a positive integer, or absent for the model's default")


def _attacks(c: Checker) -> None:
    datasets = c.get("grid.datasets")
    rate = c.number("attack.poison_rate", 0.0, 1.0)
    target = c.get("attack.target")
    for ds in datasets:
        n = NUM_CLASSES[ds]
        if not is_int(target) or not 0 <= target < n:
            fail("attack.target", target, f"an integer class label in [0, {n - 1}] for dataset {ds}")
        # All-to-one poisons only non-target images: a balanced set has (1 - 1/classes) of them.
        train = _train_size(c, ds)
        if round(rate * train) < 1 or rate > 1 - 1 / n:
            fail("attack.poison_rate", rate, f"at least one of {ds}'s {train} training images and at most "
                                             f"{1 - 1 / n:.3f} (its non-target share)")
    side = min(IMAGE_SIDE[ds] for ds in datasets)
    smallest = min(datasets, key=IMAGE_SIDE.get)
    size = c.integer("attack.badnets.size")
    if size > side:
        fail("attack.badnets.size", size, f"at most {side}, the image side of {smallest}")
    c.number("attack.blended.alpha", 0.0, 1.0, high_open=False)
    pattern = c.get("attack.blended.pattern_file")
    if pattern is not None:
        _check_pattern_file(pattern)
    c.number("attack.lf.eps", 0.0, 1.0, high_open=False)
    c.number("attack.lf.cutoff", 0.0, 1.0, high_open=False)
    c.integer("attack.lf.steps")
    c.number("attack.lf.lr", 0.0, INF)
    c.integer("attack.lf.batch_size")
    k = c.integer("attack.wanet.k", low=2)
    if k > side:
        fail("attack.wanet.k", k, f"an integer in [2, {side}] (the warp's control grid within {smallest}'s image side)")
    c.number("attack.wanet.s", 0.0, INF)
    c.number("attack.wanet.grid_rescale", 0.0, INF)
    c.number("attack.wanet.cross_ratio", 0.0, INF, low_open=False)
    for key in ("width", "mask_epochs", "surrogate_width"):
        c.integer(f"attack.inputaware.{key}")
    c.integer("attack.inputaware.pattern_epochs", low=0)
    batch = c.get("attack.inputaware.batch_size")
    if not is_int(batch) or batch < 2:
        fail("attack.inputaware.batch_size", batch, "an integer >= 2 (the diversity loss pairs images)")
    c.number("attack.inputaware.mask_density", 0.0, 1.0)
    c.number("attack.inputaware.surrogate_poison_rate", 0.0, 0.5, high_open=False)
    for key in ("lambda_div", "lambda_norm", "cross_ratio"):
        c.number(f"attack.inputaware.{key}", 0.0, INF, low_open=False)
    c.number("attack.inputaware.lr", 0.0, INF)


def _check_pattern_file(pattern: Any) -> None:
    key = "attack.blended.pattern_file"
    if not isinstance(pattern, str) or not pattern:
        fail(key, pattern, "null (a seeded random pattern) or the path of an image file")
    if not os.path.isfile(pattern):  # unlike Path.is_file, never raises (a name too long, no access)
        fail(key, pattern, "null or the path of an existing image file (relative to the project root)")
    from PIL import Image

    try:
        with Image.open(pattern) as image:
            image.verify()
    except Exception:  # noqa: BLE001 - PIL raises many types (OSError, SyntaxError, DecompressionBombError)
        fail(key, pattern, "null or an image file that PIL can read (PNG, JPEG, ...)")


def _defenses(c: Checker) -> None:
    datasets = c.get("grid.datasets")
    c.integer("defense.epochs")
    fraction = c.number("defense.clean_fraction", 0.0, 1.0, high_open=False)
    batch = c.get("defense.batch_size")
    if batch is not None and (not is_int(batch) or batch < 1):
        fail("defense.batch_size", batch, "null (the recipe's batch size) or a positive integer")
    for ds in datasets:
        n_clean = _clean_size(c, ds)
        need = batch if batch is not None else c.get(f"{recipe_key(c.params, ds, c)}.batch_size")
        if n_clean < need:
            key = "defense.clean_fraction"
            fail(key, fraction, f"a share of {ds}'s training split that holds one defender batch of {need} "
                                 f"(this gives {n_clean} images)")
    c.number("defense.momentum", 0.0, 1.0, low_open=False)
    c.number("defense.weight_decay", 0.0, INF, low_open=False)
    c.number("defense.ft.lr", 0.0, INF)
    for key in ("base_lr", "max_lr1", "max_lr2"):
        c.number(f"defense.sft.{key}", 0.0, INF)
    c.number("defense.sft.phase1_fraction", 0.0, 1.0, low_open=False, high_open=False)
    cycle = c.get("defense.sft.cycle_steps")
    if not is_int(cycle) or cycle < 2:
        fail("defense.sft.cycle_steps", cycle, "an integer >= 2 (optimisation steps per triangular cycle)")
    # the baselines (src/sequela/defenses/{fp,nad,nc,abl,ac,spectral}.py)
    c.number("defense.fp.acc_drop", 0.0, 1.0, low_open=False)
    c.number("defense.fp.holdout_fraction", 0.0, 1.0)
    c.number("defense.fp.lr", 0.0, INF)
    c.integer("defense.nad.te_epochs")
    c.number("defense.nad.lr", 0.0, INF)
    c.number("defense.nad.p", 0.0, INF)
    betas = c.get("defense.nad.betas")
    if not isinstance(betas, list) or not betas or not all(is_number(b) and 0 <= b < INF for b in betas):
        fail("defense.nad.betas", betas, "a non-empty list of non-negative numbers (one per distilled stage)")
    for key in ("steps", "batch_size", "check_every", "patience"):
        c.integer(f"defense.nc.{key}")
    for key in ("lr", "init_cost", "anomaly_threshold", "lr_unlearn"):
        c.number(f"defense.nc.{key}", 0.0, INF)
    c.number("defense.nc.cost_multiplier", 1.0, INF)
    c.number("defense.nc.asr_threshold", 0.0, 1.0, high_open=False)
    c.number("defense.nc.unlearn_share", 0.0, 1.0, low_open=False, high_open=False)
    c.integer("defense.abl.isolation_epochs")
    c.integer("defense.abl.unlearning_epochs")
    c.number("defense.abl.gamma", 0.0, INF, low_open=False)
    c.number("defense.abl.isolation_ratio", 0.0, 1.0)
    c.number("defense.abl.unlearning_lr", 0.0, INF)
    c.integer("defense.ac.components")
    c.number("defense.ac.size_threshold", 0.0, 1.0, high_open=False)
    c.number("defense.spectral.removal_factor", 0.0, INF)
    c.choice("defense.spectral.budget", ("backdoorbench", "tran"))


# Each ablation sweep's values: (lowest, highest, lowest allowed, highest allowed, what they are).
SWEEP_RANGES = {
    "clean_fraction": (0.0, 1.0, False, True, "shares of the clean training split in (0, 1]"),
    # a batch larger than the clean subset is allowed: it shows what one batch per epoch gives
    "batch_size": (1, INF, True, False, "defender batch sizes, integers >= 1"),
    "epochs": (1, INF, True, False, "defense epochs, integers >= 1"),
    "ft_lr": (0.0, INF, False, False, "learning rates > 0"),
    "sft_max_lr1": (0.0, INF, False, False, "learning rates > 0"),
    "sft_max_lr2": (0.0, INF, False, False, "learning rates > 0"),
    "sft_phase1_fraction": (0.0, 1.0, True, True, "shares of the steps in [0, 1]"),
    "sft_cycle_steps": (2, INF, True, False, "cycle lengths in steps, integers >= 2"),
    "poison_rate": (0.0, 1.0, False, False, "poison rates in (0, 1)"),
}


def _ablation(c: Checker) -> None:
    """Every sweep's list, each value by the rule of the setting it replaces."""
    from sequela.ablation import SWEEPS

    # the sweeps run on the main grid's prepared data and models
    for key in ("datasets", "attacks"):
        c.names(f"ablation.{key}", c.get(f"grid.{key}"), empty_ok=True)
    for sweep, spec in SWEEPS.items():
        key = f"ablation.{sweep}"
        values = c.get(key)
        low, high, low_closed, high_closed, what = SWEEP_RANGES[sweep]
        if not isinstance(values, list):
            fail(key, values, f"a list (possibly empty) of {what}")
        for v in values:
            ok = (is_int(v) if spec.integer else is_number(v)) and (v >= low if low_closed else v > low) \
                and (v <= high if high_closed else v < high)
            if not ok:
                fail(key, v, what)
        if len(set(values)) != len(values):
            fail(key, values, "a list without repeats")
    for ds in c.get("ablation.datasets"):
        train, n = _train_size(c, ds), NUM_CLASSES[ds]
        need = c.get("defense.batch_size") or c.get(f"{recipe_key(c.params, ds, c)}.batch_size")
        for fraction in c.get("ablation.clean_fraction"):
            if max(1, round(fraction * train)) < need:
                fail("ablation.clean_fraction", fraction, f"a share of {ds}'s training split that holds one "
                                                          f"defender batch of {need}")
        for rate in c.get("ablation.poison_rate"):
            if round(rate * train) < 1 or rate > 1 - 1 / n:
                fail("ablation.poison_rate", rate, f"at least one of {ds}'s {train} training images and at "
                                                   f"most {1 - 1 / n:.3f} (its non-target share)")


def _sweeps_and_sequela(c: Checker) -> None:
    _ablation(c)
    c.integer("curves.eval_n")
    c.integer("sequela.membership.top_k")
    c.integer("sequela.membership.mlp.hidden")
    c.integer("sequela.membership.mlp.epochs")
    c.number("sequela.membership.mlp.lr", 0.0, INF)
    for key in ("n_clean", "k", "epochs", "batch_size", "draws", "eval_n"):
        c.integer(f"sequela.reinject.{key}")
    c.number("sequela.reinject.lr", 0.0, INF)
    n_clean, k = c.get("sequela.reinject.n_clean"), c.get("sequela.reinject.k")
    for ds in c.get("grid.datasets"):
        # k non-target rows must be left after the n_clean: about k / (1 - 1/classes) rows of a balanced set
        need = n_clean + math.ceil(k * NUM_CLASSES[ds] / (NUM_CLASSES[ds] - 1))
        if need > _train_size(c, ds):
            fail("sequela.reinject.n_clean", n_clean, f"n_clean + k (k non-target images) within the "
                                                       f"{_train_size(c, ds)} images of {ds}'s training split")
    c.number("sequela.pgd.eps", 0.0, 1.0, low_open=False, high_open=False)
    c.number("sequela.pgd.step", 0.0, 1.0, low_open=False, high_open=False)
    c.integer("sequela.pgd.steps")
    c.integer("sequela.pgd.n")
    c.boolean("sequela.pgd.random_start")


def _paradigms(c: Checker) -> None:
    """The transfer and encoder sections: the datasets they pair, their targets and their training."""
    up = c.get("transfer.upstream")
    for name in up if isinstance(up, list) else []:
        if name not in c.get("grid.datasets"):  # its train@ models are what is shipped
            fail("transfer.upstream", name, f"one of grid.datasets ({', '.join(c.get('grid.datasets'))}); "
                                            "without the transfer cells: -S 'transfer.upstream=[]'")
    up = c.names("transfer.upstream", c.get("grid.datasets"), empty_ok=True)
    down = c.names("transfer.downstream", DATASETS, empty_ok=True)
    for name in set(up) & set(down):
        fail("transfer.downstream", name, f"a dataset other than the upstream {name} (a pair transfers to a new task)")
    c.names("transfer.attacks", c.get("grid.attacks"), empty_ok=True)
    # the encoder is the pre-training set's recipe model
    c.names("encoder.pretrain", [d for d in DATASETS if d in c.get("recipe")], empty_ok=True)
    _downstream_section(c, "transfer", down)
    _downstream_section(c, "encoder", c.names("encoder.downstream", DATASETS, empty_ok=True))
    c.integer("encoder.head.hidden")
    c.integer("encoder.head.batch_size")
    c.boolean("encoder.head.standardize")
    s = "encoder.simclr"
    for key in ("epochs", "batch_size", "proj_dim"):
        c.integer(f"{s}.{key}")
    if c.get(f"{s}.batch_size") < 2:
        fail(f"{s}.batch_size", c.get(f"{s}.batch_size"), "an integer >= 2 (NT-Xent contrasts a batch's images)")
    max_images = c.get(f"{s}.max_images")
    if max_images is not None and (not is_int(max_images) or max_images < c.get(f"{s}.batch_size")):
        fail(f"{s}.max_images", max_images, f"null (every training image) or an integer >= {s}.batch_size "
                                            f"({c.get(f'{s}.batch_size')})")
    c.number(f"{s}.lr", 0.0, INF)
    c.number(f"{s}.temperature", 0.0, INF)
    c.number(f"{s}.crop_min", 0.0, 1.0, high_open=False)
    c.boolean(f"{s}.flip")
    c.number(f"{s}.jitter", 0.0, 1.0, low_open=False, high_open=True)
    b = "encoder.badencoder"
    for key in ("epochs", "batch_size", "n_reference", "size_at_32"):
        c.integer(f"{b}.{key}")
    c.number(f"{b}.lr", 0.0, INF)
    c.number(f"{b}.lambda1", 0.0, INF, low_open=False)
    c.number(f"{b}.lambda2", 0.0, INF, low_open=False)
    c.number(f"{b}.shadow_fraction", 0.0, 1.0)
    if c.get(f"{b}.size_at_32") > 32:
        fail(f"{b}.size_at_32", c.get(f"{b}.size_at_32"), "an integer in [1, 32] (the trigger's side at 32x32)")


def _downstream_section(c: Checker, section: str, downstream: list[str]) -> None:
    """`<section>.target`, `.max_train` and `.head` against each downstream dataset of the section."""
    target, max_train = c.get(f"{section}.target"), c.get(f"{section}.max_train")
    for ds in downstream:
        if not is_int(target) or not 0 <= target < NUM_CLASSES[ds]:
            fail(f"{section}.target", target, f"an integer class label in [0, {NUM_CLASSES[ds] - 1}] for "
                                              f"downstream dataset {ds}")
        if max_train is not None and (not is_int(max_train) or max_train < 2 * NUM_CLASSES[ds]):
            fail(f"{section}.max_train", max_train, f"null or an integer of at least two images per class of "
                                                    f"{ds} ({2 * NUM_CLASSES[ds]})")
    c.integer(f"{section}.head.epochs")
    c.number(f"{section}.head.lr", 0.0, INF)


def _train_size(c: Checker, dataset: str) -> int:
    """From the official split sizes: a smaller copy of a dataset gets smaller splits than this."""
    return target_train_size(dataset, c.get("data.test_fraction"), c.get("data.shadow_fraction"))


def _clean_size(c: Checker, dataset: str) -> int:
    """The defender's clean subset: data.clean_subset draws round(fraction * n) rows, at least one."""
    return max(1, round(c.get("defense.clean_fraction") * _train_size(c, dataset)))


def load_params(path: str | Path = "params.yaml") -> dict:
    """params.yaml, checked; warnings (unread keys) go to stderr, one line each."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; run the stage from the project root")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or "not valid YAML"
        raise ConfigError(f"{path}: cannot be parsed{where}: {problem}") from None
    for warning in validate(params):
        print(f"warning: {warning}", file=sys.stderr)
    return params


@dataclass
class Recipe:
    """How a dataset's models are trained (params.yaml `recipe.<dataset>`)."""

    model: str
    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    crop_padding: int = 0
    flip: bool = False
    width: int | None = None
    cpu_bf16: bool = False  # bf16 autocast on a CPU as well (engine.use_cpu_bf16); CUDA always uses it

    @classmethod
    def from_params(cls, params: dict, dataset: str) -> "Recipe":
        block = Checker(params).get(recipe_key(params, dataset))
        known = {f.name for f in fields(cls)}  # an unknown key was already reported by validate
        return cls(**{k: v for k, v in block.items() if k in known})


def recipe_key(params: dict, dataset: str, checker: Checker | None = None) -> str:
    """The params key of the recipe a dataset trains with: `recipe.<dataset>`, or, where that block
    holds several named recipes (the 32x32 sets: `cpu` and the paper's `gpu`), the one its `use`
    names, e.g. `recipe.gtsrb.cpu`."""
    c = checker or Checker(params)
    block = c.get(f"recipe.{dataset}")
    if not isinstance(block, dict):
        fail(f"recipe.{dataset}", block, "a mapping of training settings (model, epochs, batch_size, lr, ...)")
    if "use" not in block:
        return f"recipe.{dataset}"
    choices = sorted(str(k) for k, v in block.items() if k != "use" and isinstance(v, dict))
    use = c.get(f"recipe.{dataset}.use")
    if not isinstance(use, str) or use not in choices:
        fail(f"recipe.{dataset}.use", use, f"one of {', '.join(choices)}")
    return f"recipe.{dataset}.{use}"
