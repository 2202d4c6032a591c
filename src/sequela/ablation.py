"""The ablation sweeps: each varies one setting of the main grid and reruns what depends on it.

A sweep point is (sweep, value): params.yaml with that one setting changed, every other setting as
the main grid has it. `ablation.<sweep>` lists the values (stages `ablate_<sweep>` in dvc.yaml, one
DVC cell per dataset x attack x seed x value). The main grid is itself a point of every sweep: the
report adds it from the main grid's cells, and a listed value equal to the main grid's is not
computed a second time (its cell only records that it is the main grid's point).

Defend-only sweeps reuse the main grid's backdoored model; `poison_rate` changes the attacker, so
its points plant, train and defend their own model.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Sweep:
    key: str                  # the params.yaml key it varies
    defenses: tuple[str, ...]  # the defenses whose result it can change
    integer: bool             # the key holds an integer
    log_x: bool               # values span orders of magnitude: drawn on a log axis
    label: str                # axis label
    attacker: bool = False    # the attacker's setting: poison, train and defend rerun


SWEEPS: dict[str, Sweep] = {
    "poison_rate": Sweep("attack.poison_rate", ("none", "ft", "sft"), False, True, "attacker's poison rate",
                         attacker=True),
    "clean_fraction": Sweep("defense.clean_fraction", ("ft", "sft"), False, True,
                            "defender's clean fraction"),
    "batch_size": Sweep("defense.batch_size", ("ft", "sft"), True, True, "defender's batch size"),
    "epochs": Sweep("defense.epochs", ("ft", "sft"), True, False, "defense epochs"),
    "ft_lr": Sweep("defense.ft.lr", ("ft",), False, True, "FT learning rate (constant)"),
    "sft_max_lr1": Sweep("defense.sft.max_lr1", ("sft",), False, True, "SFT phase-1 peak rate (max_lr1)"),
    "sft_max_lr2": Sweep("defense.sft.max_lr2", ("sft",), False, True, "SFT phase-2 peak rate (max_lr2)"),
    "sft_phase1_fraction": Sweep("defense.sft.phase1_fraction", ("sft",), False, False,
                                 "SFT phase-1 share of the steps"),
    "sft_cycle_steps": Sweep("defense.sft.cycle_steps", ("sft",), True, True, "SFT cycle length (steps)"),
}


def lookup(params: dict, key: str):
    """The value at a dotted key ("" is params itself)."""
    node = params
    for part in filter(None, key.split(".")):
        node = node[part]
    return node


def with_key(params: dict, key: str, value) -> dict:
    """A copy of params with the dotted `key` set to `value`."""
    out = copy.deepcopy(params)
    parent, _, last = key.rpartition(".")
    lookup(out, parent)[last] = value
    return out


def with_value(params: dict, sweep: str, value) -> dict:
    """A copy of params with the sweep's key set to `value`."""
    return with_key(params, SWEEPS[sweep].key, value)


def main_value(params: dict, sweep: str, recipe_batch: int):
    """The main grid's value of the sweep's setting; the defender's batch resolves its null default
    (the attacker's recipe batch)."""
    value = lookup(params, SWEEPS[sweep].key)
    if sweep == "batch_size" and value is None:
        return recipe_batch
    return value


def same_value(a, b) -> bool:
    return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)


def parse_value(sweep: str, text: str):
    """The value as DVC wrote it into the stage's command (`${item.value}`)."""
    return int(text) if SWEEPS[sweep].integer else float(text)


def from_main_grid(params: dict, sweep: str, value, recipe_batch: int) -> list[str]:
    """The sweep's defenses whose result at `value` the main grid already holds: all of them where
    `value` is the main grid's value (the backdoored model "none" is always in the main grid), none
    otherwise."""
    if not same_value(value, main_value(params, sweep, recipe_batch)):
        return []
    grid = params["grid"]["defenses"]
    return [d for d in SWEEPS[sweep].defenses if d == "none" or d in grid]
