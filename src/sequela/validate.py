"""Every check of params.yaml at once: the `check` stage runs it before any other stage.

Each part checks its own section in its own module (an attack its `attack.<name>`, a defense its
`defense.<name>`, the sweeps `ablation`, the measures `sequela`, the paradigms `transfer` and
`encoder`); `sequela.pipeline.config` applies the rules that span sections. This module only calls them all,
checks the grid's names against the registries, and lists the keys nothing read, so that a typo such
as `defence.epochs` is reported in the first seconds of a run instead of never. A stage run alone
still checks the sections it reads.
"""

from __future__ import annotations

from typing import Any

from sequela import external, sweeps
from sequela.attacks.registry import ATTACKS
from sequela.datasets.sizes import NUM_CLASSES
from sequela.defenses.registry import DEFENSES, check_shared
from sequela.measures import registry as measures
from sequela.models import ARCHITECTURES
from sequela.paradigms import badencoder, downstream, simclr
from sequela.pipeline.checker import Checker, fail
from sequela.pipeline.config import check_common, smallest_side
from sequela.training import attacker
from sequela.training.recipe import check_recipe, recipe_key


def validate(params: Any) -> list[str]:
    """Check every key the pipeline reads. Raises ConfigError on the first bad one; returns one
    warning per key that nothing reads."""
    c = Checker(params)
    check_common(c)
    c.names("grid.attacks", tuple(ATTACKS))
    c.names("grid.defenses", tuple(DEFENSES))
    check_recipes(c)
    side, smallest = smallest_side(c)
    for name, cls in ATTACKS.items():  # every section, the unused ones too: a broken one fails early
        cls.check_params(c, f"attack.{name}", side, smallest)
    attacker.check(c, c.get("grid.attacks"), known=tuple(ATTACKS))
    check_shared(c)
    for name, defense in DEFENSES.items():
        defense.check(c, f"defense.{name}")
    sweeps.check(c)
    measures.check(c, c.get("grid.datasets"))
    downstream.check_transfer(c)
    downstream.check_encoder(c)
    simclr.check(c)
    simclr.check_model(c)
    badencoder.check(c)
    external.check(c)
    return [f"params.yaml: {key} is not a key the pipeline reads; it is ignored (a typo?)" for key in c.unread()]


def check_recipes(c: Checker) -> None:
    """Every recipe in the file, the unused `gpu` ones too: a broken one fails before it is used."""
    block = c.get("recipe")
    if not isinstance(block, dict):
        fail("recipe", block, "a mapping from dataset name to its training recipe")
    for dataset in block:
        if dataset not in NUM_CLASSES:
            continue  # reported as an unread key
        recipe_key(c.params, dataset, c)  # checks `use` where the block names several recipes
        if "use" in block[dataset]:
            for name, value in block[dataset].items():
                if name != "use" and isinstance(value, dict):
                    check_recipe(c, f"recipe.{dataset}.{name}", tuple(ARCHITECTURES))
        else:
            check_recipe(c, f"recipe.{dataset}", tuple(ARCHITECTURES))
