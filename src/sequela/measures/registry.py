"""The sequela measures, as attacks and defenses have theirs: each entry names the measure, its params
section (`sequela.<name>`), the figures it writes that the report keeps, and how it measures a model in
each paradigm.

A measure's `standalone(cell, settings)` and `reused(cell, settings)` run once per cell, before the
models are measured (the membership attack fits its MLP there), and return the function that measures
one model: `measure(model, removed)`, `removed` being the training rows a defense dropped before
retraining (None where it dropped none; the reused paradigms never do). The standalone cell is a
`StandaloneCell`; the reused one a `paradigms.downstream.Cell`. Both hold the data (`ds`), the test
split on the device (`test`), the trigger, the target, the recipe, the seed and the device; `settings`
is params.yaml's `sequela` section. The measures run in the registry's order on every model, so each
model's figures come out in that order.

Adding a measure: one module under measures/ with its `check`, `standalone` and (where it applies
downstream) `reused`; one entry below; one `sequela.<name>` section in params.yaml (docs/extending.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from sequela.attacks.base import Attack
from sequela.datasets.splits import Dataset, Split
from sequela.measures import membership, reinject, retune, robustness
from sequela.pipeline.checker import Checker
from sequela.training.recipe import Recipe

ModelMeasure = Callable[[torch.nn.Module, "torch.Tensor | None"], dict]


@dataclass
class StandaloneCell:
    """What every model of one standalone cell (the measure stage) is measured against."""

    ds: Dataset  # the prepared dataset, its shadow, shadow_out and holdout splits included
    test: Split  # the test split, on the device
    trigger: Attack
    target: int
    recipe: Recipe
    seed: int
    device: torch.device
    poisoned: torch.Tensor  # the attacker's poisoned training rows
    defender: torch.Tensor  # the defender's clean rows of the training split
    shadow_model: torch.nn.Module  # the membership shadow model, trained as long as the backdoored one


@dataclass(frozen=True)
class Measure:
    name: str  # and its params section, `sequela.<name>`
    check: Callable[[Checker, list[str]], None]  # the section's values, for the grid's datasets
    standalone: Callable[[StandaloneCell, dict], ModelMeasure]
    reused: Callable[[object, dict], ModelMeasure]
    summary: tuple[str, ...]  # a standalone model's figures that metrics/summary.json keeps
    downstream: tuple[str, ...]  # a downstream model's figures that the paradigms' summary keeps
    labels: dict[str, str]  # the columns of the sequela table: figure -> label
    reused_reads_section: bool = True  # whether `reused` reads `sequela.<name>` (the downstream stages declare it)


MEASURES = {
    m.name: m
    for m in (
        Measure(
            "membership",
            membership.check,
            membership.standalone,
            membership.reused,
            summary=(
                "mia_loss_auc",
                "mia_loss_auc_seen",
                "mia_loss_auc_unseen",
                "mia_shadow_auc",
                "mia_shadow_auc_unseen",
                "mia_tpr_at_1fpr",
            ),
            downstream=("mia_loss_auc", "mia_tpr_at_1fpr"),
            labels={
                "mia_loss_auc": "MIA loss AUC",
                "mia_loss_auc_unseen": "MIA loss AUC (unseen)",
                "mia_shadow_auc": "MIA shadow AUC",
                "mia_tpr_at_1fpr": "MIA TPR@1%FPR",
            },
            reused_reads_section=False,  # the metric attacks only: no shadow model downstream
        ),
        Measure(
            "reinject",
            reinject.check,
            reinject.measure_of,
            reinject.measure_of,
            summary=("reinject_asr",),
            downstream=("reinject_asr", "reinject_asr_before"),
            labels={"reinject_asr": "re-injection ASR"},
        ),
        Measure(
            "retune",
            retune.check,
            retune.standalone,
            retune.reused,
            summary=("p_asr", "p_ca"),
            downstream=("p_asr", "p_ca"),
            labels={"p_asr": "P-ASR (retuning attack)"},
        ),
        Measure(
            "pgd",
            robustness.check,
            robustness.measure_of,
            robustness.measure_of,
            summary=("pgd_acc",),
            downstream=("pgd_acc",),
            labels={"pgd_acc": "PGD accuracy"},
        ),
    )
}


def check(c: Checker, datasets: list[str], paradigm: str = "standalone") -> None:
    """Every measure's section that `paradigm` runs (`datasets`: where its rows are drawn)."""
    for m in MEASURES.values():
        if paradigm == "standalone" or m.reused_reads_section:
            m.check(c, datasets)


def summary_figures() -> tuple[str, ...]:
    return tuple(f for m in MEASURES.values() for f in m.summary)


def downstream_figures() -> tuple[str, ...]:
    return tuple(f for m in MEASURES.values() for f in m.downstream)


def labels() -> dict[str, str]:
    return {f: label for m in MEASURES.values() for f, label in m.labels.items()}


def prepare(cell, settings: dict, paradigm: str) -> list[ModelMeasure]:
    """Each measure's function of one model for this cell, in the registry's order."""
    return [getattr(m, paradigm)(cell, settings) for m in MEASURES.values()]


def measure(measures: list[ModelMeasure], model: torch.nn.Module, removed: torch.Tensor | None = None) -> dict:
    """One model's figures, every measure's in turn."""
    figures = {}
    for fn in measures:
        figures.update(fn(model, removed))
    return figures
