"""What every stage script does first, and how it ends.

`open_stage` reads the stage's arguments (`--dataset`, `--attack`, `--seed`, ... as DVC's matrix
fills them in), loads params.yaml with the rules that span sections (sequela.pipeline.config), checks the
recipe of the dataset it trains on, sets bf16 autocast from that recipe, picks the device and seeds
every generator. The stage then checks the sections of the parts it uses (an attack, the defenses,
the sweeps) with their own checks and `stage.checker`, before any work: this module imports no part,
so that a stage depends only on the parts it uses. `run(main)` turns an expected failure into one
line on stderr and a non-zero status.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from sequela.pipeline.checker import Checker
from sequela.pipeline.config import load_params
from sequela.pipeline.errors import exit_on_error
from sequela.training.recipe import Recipe, check_recipe, recipe_key

INTEGER_ARGUMENTS = ("seed",)


@dataclass
class Stage:
    args: argparse.Namespace
    params: dict
    checker: Checker
    recipe: Recipe | None = None
    device: Any = None  # torch.device, where the stage asked for one


def open_stage(
    doc: str, *arguments: str, recipe_of: str | None = None, bf16: bool = True, device: bool = True, seed: bool = True
) -> Stage:
    """Parse `--<argument>` for each of `arguments`, load and check params.yaml; with `recipe_of`
    (the argument naming the dataset whose recipe trains the models), check that recipe and, unless
    `bf16` is false (the paradigm stages run float32), set its bf16 autocast;
    with `device`, pick the device; with `seed`, seed every generator with `--seed`."""
    parser = argparse.ArgumentParser(description=doc)
    for name in arguments:
        parser.add_argument(f"--{name}", required=True, type=int if name in INTEGER_ARGUMENTS else str)
    args = parser.parse_args()
    params = load_params()
    stage = Stage(args, params, Checker(params))
    if recipe_of is not None:
        from sequela.engine.device import use_cpu_bf16
        from sequela.models import ARCHITECTURES

        dataset = getattr(args, recipe_of)
        check_recipe(stage.checker, recipe_key(params, dataset, stage.checker), tuple(ARCHITECTURES))
        stage.recipe = Recipe.from_params(params, dataset)
        use_cpu_bf16(stage.recipe.cpu_bf16 and bf16)
    if device:
        from sequela.engine.device import pick_device, seed_everything

        stage.device = pick_device(params["device"])
        if seed and "seed" in arguments:
            seed_everything(args.seed)
    return stage


def run_main(main) -> None:
    exit_on_error(main)
