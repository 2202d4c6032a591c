"""Reading and checking params.yaml before any work starts.

Every stage calls `load_params` first. A bad value stops the stage with one line that names the
key, the value and what is allowed (exit status 2, no traceback), so a typo in a sweep fails in a
second instead of after an hour of training.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from sequela.data import NUM_CLASSES
from sequela.errors import ConfigError

__all__ = ["ConfigError", "Recipe", "load_params", "recipe_key", "run_stage", "validate"]


def _get(params: dict, key: str) -> Any:
    node = params
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"params.yaml: {key} is missing")
        node = node[part]
    return node


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"params.yaml: {key} = {value!r} is not allowed; allowed: {allowed}")


def _number(params: dict, key: str, low: float, high: float, low_open: bool = True, high_open: bool = True) -> None:
    value = _get(params, key)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        _fail(key, value, f"a number in {lo}{low}, {high}{hi}")


def _positive_int(params: dict, key: str) -> None:
    value = _get(params, key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        _fail(key, value, "a positive integer")


def _non_negative_int(params: dict, key: str) -> None:
    value = _get(params, key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        _fail(key, value, "a non-negative integer")


def _names(params: dict, key: str, known: tuple[str, ...] | list[str]) -> list[str]:
    value = _get(params, key)
    if not isinstance(value, list) or not value:
        _fail(key, value, f"a non-empty list drawn from {', '.join(known)}")
    for name in value:
        if name not in known:
            _fail(key, name, f"one of {', '.join(known)}")
    return value


def validate(params: dict) -> None:
    """Check every key the pipeline reads. Raises ConfigError on the first bad one."""
    from sequela.attacks import ATTACKS
    from sequela.defenses import DEFENSES
    from sequela.models import ARCHITECTURES

    seeds = _get(params, "grid.seeds")
    if (not isinstance(seeds, list) or not seeds or len(set(map(str, seeds))) != len(seeds)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        _fail("grid.seeds", seeds, "a non-empty list of distinct non-negative integers")
    datasets = _names(params, "grid.datasets", tuple(NUM_CLASSES))
    _names(params, "grid.attacks", tuple(ATTACKS))
    _names(params, "grid.defenses", tuple(DEFENSES))
    _non_negative_int(params, "data.split_seed")
    _number(params, "data.test_fraction", 0.0, 1.0)
    _number(params, "data.shadow_fraction", 0.0, 1.0, low_open=False)
    _number(params, "data.holdout_fraction", 0.0, 0.5, low_open=False)

    for ds in datasets:
        key = recipe_key(params, ds)
        if _get(params, f"{key}.model") not in ARCHITECTURES:
            _fail(f"{key}.model", _get(params, f"{key}.model"), f"one of {', '.join(ARCHITECTURES)}")
        _positive_int(params, f"{key}.epochs")
        _positive_int(params, f"{key}.batch_size")
        _number(params, f"{key}.lr", 0.0, float("inf"))
        crop = _get(params, f"{key}.crop_padding")
        if not isinstance(crop, int) or isinstance(crop, bool) or crop < 0:
            _fail(f"{key}.crop_padding", crop, "a non-negative integer")

    _number(params, "attack.poison_rate", 0.0, 1.0)
    target = _get(params, "attack.target")
    for ds in datasets:
        n = NUM_CLASSES[ds]
        if not isinstance(target, int) or isinstance(target, bool) or not 0 <= target < n:
            _fail("attack.target", target, f"an integer class label in [0, {n - 1}] for dataset {ds}")
    _positive_int(params, "attack.badnets.size")
    _number(params, "attack.blended.alpha", 0.0, 1.0, high_open=False)
    _number(params, "attack.lf.eps", 0.0, 1.0, high_open=False)
    _number(params, "attack.lf.cutoff", 0.0, 1.0, high_open=False)
    _positive_int(params, "attack.lf.steps")
    _number(params, "attack.lf.lr", 0.0, float("inf"))
    _positive_int(params, "attack.lf.batch_size")
    _positive_int(params, "attack.wanet.k")
    _number(params, "attack.wanet.s", 0.0, float("inf"))
    _number(params, "attack.wanet.grid_rescale", 0.0, float("inf"))
    _number(params, "attack.wanet.cross_ratio", 0.0, float("inf"), low_open=False)
    for key in ("width", "mask_epochs", "surrogate_width"):
        _positive_int(params, f"attack.inputaware.{key}")
    epochs = _get(params, "attack.inputaware.pattern_epochs")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
        _fail("attack.inputaware.pattern_epochs", epochs, "a non-negative integer")
    batch = _get(params, "attack.inputaware.batch_size")
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 2:
        _fail("attack.inputaware.batch_size", batch, "an integer >= 2 (the diversity loss pairs images)")
    _number(params, "attack.inputaware.mask_density", 0.0, 1.0)
    _number(params, "attack.inputaware.surrogate_poison_rate", 0.0, 0.5, high_open=False)
    for key in ("lambda_div", "lambda_norm", "cross_ratio"):
        _number(params, f"attack.inputaware.{key}", 0.0, float("inf"), low_open=False)
    _number(params, "attack.inputaware.lr", 0.0, float("inf"))

    _positive_int(params, "defense.epochs")
    _number(params, "defense.clean_fraction", 0.0, 1.0, high_open=False)
    batch = _get(params, "defense.batch_size")
    if batch is not None and (not isinstance(batch, int) or isinstance(batch, bool) or batch < 1):
        _fail("defense.batch_size", batch, "null (the recipe's batch size) or a positive integer")
    _number(params, "defense.ft.lr", 0.0, float("inf"))
    for key in ("base_lr", "max_lr1", "max_lr2"):
        _number(params, f"defense.sft.{key}", 0.0, float("inf"))
    _number(params, "defense.sft.phase1_fraction", 0.0, 1.0, low_open=False, high_open=False)
    cycle = _get(params, "defense.sft.cycle_steps")
    if not isinstance(cycle, int) or isinstance(cycle, bool) or cycle < 2:
        _fail("defense.sft.cycle_steps", cycle, "an integer >= 2 (optimisation steps per triangular cycle)")
    # the baselines (src/sequela/defenses/{fp,nad,nc,abl,ac,spectral}.py)
    inf = float("inf")
    _number(params, "defense.fp.acc_drop", 0.0, 1.0, low_open=False)
    _number(params, "defense.fp.holdout_fraction", 0.0, 1.0)
    _number(params, "defense.fp.lr", 0.0, inf)
    _positive_int(params, "defense.nad.te_epochs")
    _number(params, "defense.nad.lr", 0.0, inf)
    _number(params, "defense.nad.p", 0.0, inf)
    betas = _get(params, "defense.nad.betas")
    if (not isinstance(betas, list) or not betas
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and b >= 0 for b in betas)):
        _fail("defense.nad.betas", betas, "a non-empty list of non-negative numbers (one per distilled stage)")
    for key in ("steps", "batch_size", "check_every", "patience"):
        _positive_int(params, f"defense.nc.{key}")
    for key in ("lr", "init_cost", "anomaly_threshold", "lr_unlearn"):
        _number(params, f"defense.nc.{key}", 0.0, inf)
    _number(params, "defense.nc.cost_multiplier", 1.0, inf)
    _number(params, "defense.nc.asr_threshold", 0.0, 1.0, high_open=False)
    _number(params, "defense.nc.unlearn_share", 0.0, 1.0, low_open=False, high_open=False)
    _positive_int(params, "defense.abl.isolation_epochs")
    _positive_int(params, "defense.abl.unlearning_epochs")
    _number(params, "defense.abl.gamma", 0.0, inf, low_open=False)
    _number(params, "defense.abl.isolation_ratio", 0.0, 1.0)
    _number(params, "defense.abl.unlearning_lr", 0.0, inf)
    _positive_int(params, "defense.ac.components")
    _number(params, "defense.ac.size_threshold", 0.0, 1.0, high_open=False)
    _number(params, "defense.spectral.removal_factor", 0.0, inf)
    budget = _get(params, "defense.spectral.budget")
    if budget not in ("backdoorbench", "tran"):
        _fail("defense.spectral.budget", budget, "backdoorbench or tran")

    # the sensitivity sweep (stages/sensitivity.py) runs on models of the main grid
    for key, known in (("datasets", datasets), ("attacks", _get(params, "grid.attacks"))):
        values = _get(params, f"sensitivity.{key}")
        if not isinstance(values, list) or any(v not in known for v in values):
            _fail(f"sensitivity.{key}", values, f"a list (empty for no sweep) drawn from grid.{key}: {', '.join(known)}")
    for key, low in (("batch_sizes", 1), ("cycle_steps", 2)):
        values = _get(params, f"sensitivity.{key}")
        if (not isinstance(values, list) or not values
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= low for v in values)):
            _fail(f"sensitivity.{key}", values, f"a non-empty list of integers >= {low}")

    _positive_int(params, "curves.eval_n")

    # sequela (stages/sequela_cell.py)
    _positive_int(params, "sequela.membership.top_k")
    _positive_int(params, "sequela.membership.mlp.hidden")
    _positive_int(params, "sequela.membership.mlp.epochs")
    _number(params, "sequela.membership.mlp.lr", 0.0, float("inf"))
    for key in ("n_clean", "k", "epochs", "batch_size", "draws", "eval_n"):
        _positive_int(params, f"sequela.reinject.{key}")
    _number(params, "sequela.reinject.lr", 0.0, float("inf"))
    _number(params, "sequela.pgd.eps", 0.0, 1.0, low_open=False, high_open=False)
    _number(params, "sequela.pgd.step", 0.0, 1.0, low_open=False, high_open=False)
    _positive_int(params, "sequela.pgd.steps")
    _positive_int(params, "sequela.pgd.n")
    if not isinstance(_get(params, "sequela.pgd.random_start"), bool):
        _fail("sequela.pgd.random_start", _get(params, "sequela.pgd.random_start"), "true or false")


def load_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; run the stage from the project root")
    params = yaml.safe_load(path.read_text()) or {}
    validate(params)
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

    @classmethod
    def from_params(cls, params: dict, dataset: str) -> "Recipe":
        return cls(**_get(params, recipe_key(params, dataset)))


def recipe_key(params: dict, dataset: str) -> str:
    """The params key of the recipe a dataset trains with: `recipe.<dataset>`, or, where that block
    holds several named recipes (the 32x32 sets: `cpu` and the paper's `gpu`), the one its `use`
    names, e.g. `recipe.gtsrb.cpu`."""
    block = _get(params, f"recipe.{dataset}")
    if not isinstance(block, dict) or "use" not in block:
        return f"recipe.{dataset}"
    choices = sorted(k for k, v in block.items() if k != "use" and isinstance(v, dict))
    if block["use"] not in choices:
        _fail(f"recipe.{dataset}.use", block["use"], f"one of {', '.join(choices)}")
    return f"recipe.{dataset}.{block['use']}"


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's `main`; a ConfigError becomes one line on stderr and exit status 2."""
    try:
        main()
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
