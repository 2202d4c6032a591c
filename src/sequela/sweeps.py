"""The ablation sweeps: each varies one setting of the main grid and reruns what depends on it.

A sweep point is (sweep, value): params.yaml with that one setting changed, every other setting as
the main grid has it. `ablation.points` lists the points as `<sweep>-<value>` strings (the stage
`ablate` in dvc.yaml builds one DVC cell per dataset x attack x seed x point, so editing one point
recomputes only its cells). The main grid is itself a point of every sweep: the
report adds it from the main grid's cells, and a listed value equal to the main grid's is not
computed a second time (its cell only records that it is the main grid's point).

Defend-only sweeps reuse the main grid's backdoored model; `poison_rate` and `victim_rounds` change
the attacker, so their points plant, train and defend their own model, and read the clean reference
trained as long as it. The main grid trains by the budget rule, not a fixed number of rounds, so it is
no point of `victim_rounds` (its main value is null).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

from sequela.pipeline.checker import INF, Checker, fail


@dataclass(frozen=True)
class Sweep:
    key: str  # the params.yaml key it varies
    defenses: tuple[str, ...]  # the defenses whose result it can change
    integer: bool  # the key holds an integer
    log_x: bool  # values span orders of magnitude: drawn on a log axis
    label: str  # axis label
    attacker: bool = False  # the attacker's setting: poison, train and defend rerun


SWEEPS: dict[str, Sweep] = {
    # FST too: its paper's question is where vanilla tuning breaks as the poison rate falls.
    "poison_rate": Sweep(
        "attack.poison_rate",
        ("none", "clean", "ft", "sft", "fst"),
        False,
        True,
        "attacker's poison rate",
        attacker=True,
    ),
    "clean_fraction": Sweep("defense.clean_fraction", ("ft", "sft"), False, True, "defender's clean fraction"),
    "batch_size": Sweep("defense.batch_size", ("ft", "sft"), True, True, "defender's batch size"),
    "epochs": Sweep("defense.epochs", ("ft", "sft"), True, False, "defense epochs"),
    "ft_lr": Sweep("defense.ft.lr", ("ft",), False, True, "FT learning rate (constant)"),
    "sft_max_lr1": Sweep("defense.sft.max_lr1", ("sft",), False, True, "SFT phase-1 peak rate (max_lr1)"),
    "sft_max_lr2": Sweep("defense.sft.max_lr2", ("sft",), False, True, "SFT phase-2 peak rate (max_lr2)"),
    "sft_phase1_fraction": Sweep(
        "defense.sft.phase1_fraction", ("sft",), False, False, "SFT phase-1 share of the steps"
    ),
    "sft_cycle_steps": Sweep("defense.sft.cycle_steps", ("sft",), True, True, "SFT cycle length (steps)"),
    # How long the victim trained (rounds of the recipe's epochs, the budget rule off), beside the clean
    # reference trained as long: whether a removal holds for a more entrenched backdoor.
    "victim_rounds": Sweep(
        "attack.budget.rounds",
        ("none", "clean", "ft", "sft"),
        True,
        False,
        "rounds the victim trained (each the recipe's epochs)",
        attacker=True,
    ),
    # PAM's rho is a distance in weight space, so its reference value does not carry across models.
    "pam_rho": Sweep("defense.pam.rho", ("pam",), False, True, "PAM's rho (weight-space step)"),
}


# Each sweep's values: (lowest, highest, lowest allowed, highest allowed, what they are).
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
    "pam_rho": (0.0, INF, True, False, "rho >= 0"),
    "victim_rounds": (1, INF, True, False, "rounds, integers >= 1"),
}


def parse_point(point: str) -> tuple[str, object]:
    """`<sweep>-<value>` -> (sweep, value); ValueError names what is wrong. Sweep names hold no '-'."""
    if not isinstance(point, str) or "-" not in point:
        raise ValueError("a string <sweep>-<value>, e.g. clean_fraction-0.2")
    sweep, _, text = point.partition("-")
    if sweep not in SWEEPS:
        raise ValueError(f"a point whose sweep is one of {', '.join(SWEEPS)}")
    try:
        value = parse_value(sweep, text)
    except ValueError:
        raise ValueError(f"a point whose value is {'an integer' if SWEEPS[sweep].integer else 'a number'}") from None
    low, high, low_closed, high_closed, what = SWEEP_RANGES[sweep]
    v = value
    if not (v >= low if low_closed else v > low) or not (v <= high if high_closed else v < high):
        raise ValueError(f"{sweep} values that are {what}")
    return sweep, value


def points_by_sweep(points: list[str]) -> dict[str, list[tuple[str, object]]]:
    """{sweep: [(point, value) in the order listed]} of `ablation.points`."""
    out: dict[str, list] = {}
    for point in points:
        sweep, value = parse_point(point)
        out.setdefault(sweep, []).append((point, value))
    return out


def check(c: Checker) -> None:
    """`ablation.*`: the points, and each clean share or poison rate against the datasets it runs on."""
    from sequela.pipeline.config import check_clean_share, check_poison_rate
    from sequela.training.attacker import check_rounds

    for key in ("datasets", "attacks"):  # the sweeps run on the main grid's prepared data and models
        c.names(f"ablation.{key}", c.get(f"grid.{key}"), empty_ok=True)
    points = c.get("ablation.points")
    if not isinstance(points, list):
        fail("ablation.points", points, "a list (possibly empty) of <sweep>-<value> strings")
    for point in points:
        try:
            parse_point(point)
        except ValueError as err:
            fail("ablation.points", point, str(err))
    if len(set(points)) != len(points):
        fail("ablation.points", points, "a list without repeats")
    for ds in c.get("ablation.datasets"):
        for point in points:
            sweep, value = parse_point(point)
            if sweep == "clean_fraction":
                check_clean_share(c, "ablation.points", value, ds, shown=point)
            elif sweep == "poison_rate":
                check_poison_rate(c, "ablation.points", value, ds, shown=point)
            elif sweep == "victim_rounds":
                check_rounds(c, "ablation.points", value, c.get("attack.budget.max_rounds"), shown=point)


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


def in_main_grid(params: dict, sweep: str) -> list[str]:
    """The sweep's models the main grid holds: the backdoored model "none", the clean reference, and
    the sweep's defenses that are in grid.defenses."""
    grid = params["grid"]["defenses"]
    return [d for d in SWEEPS[sweep].defenses if d in ("none", "clean") or d in grid]


def from_main_grid(params: dict, sweep: str, value, recipe_batch: int) -> list[str]:
    """The sweep's models whose result at `value` the main grid already holds: all it holds where
    `value` is the main grid's value, none otherwise."""
    if not same_value(value, main_value(params, sweep, recipe_batch)):
        return []
    return in_main_grid(params, sweep)
