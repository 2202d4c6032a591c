"""One defense applied to one backdoored model: the loop the defend stage, the ablation points and
`sequela defend` share.

Each defense starts from its own copy of the backdoored model and its own seeded generators, so its
result does not depend on which other defenses run, or in what order. Its cost is its own wall time:
the per-epoch evaluations that draw its curve are left out. Its final figures use the whole test split.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable

import torch

from sequela.attacks.base import Attack
from sequela.datasets.splits import Split
from sequela.defenses.base import DefenseContext
from sequela.engine.device import seed_everything
from sequela.metrics import clean_accuracy, evaluate
from sequela.pipeline.records import CurveRecorder
from sequela.training.recipe import Recipe


@dataclass
class Defended:
    """What every defense of one backdoored model reads. `settings` is params.yaml's `defense`
    section (an ablation point's, with its one value changed)."""

    backdoored: torch.nn.Module
    spec: dict
    clean: Split  # the defender's clean data
    train: Split  # the training split as shipped (training-time defenses)
    poisoned: torch.Tensor  # its poisoned rows (training-time defenses replay them)
    attack: Attack | None  # None: a model without a backdoor, figures are CA only
    target: int
    poison_rate: float
    recipe: Recipe
    device: torch.device
    settings: dict
    seed: int
    test: Split  # on the device; the final figures
    curve_test: Split | None = None  # on the device; the per-epoch curve (None: no curve)
    rounds: int = 1  # rounds of the recipe's epochs the backdoored model trained
    dataset: str | None = None  # picks the defenses' per_dataset settings (defenses.base.defense_settings)

    def evaluate(self, model: torch.nn.Module, split: Split) -> dict:
        if self.attack is None:  # a model without a backdoor (the benign condition): no trigger to measure
            return {"ca": clean_accuracy(model, split)}
        return evaluate(model, split, self.attack, self.target)


@dataclass
class Outcome:
    model: torch.nn.Module
    figures: dict  # ca, asr, ra, seconds, epochs, clean_fraction, n_clean, batch_size, extras
    curve: list[dict]  # per-epoch rows, epoch 0 = before the defense
    removed_rows: torch.Tensor | None  # training rows a training-time defense dropped


def apply_defense(name: str, run: Callable[[DefenseContext], dict], cell: Defended) -> Outcome:
    """Run defense `name` (its registry `run`) on a copy of `cell.backdoored`."""
    seed_everything(cell.seed)
    curve_on = cell.curve_test is not None
    recorder = CurveRecorder((lambda m: cell.evaluate(m, cell.curve_test)) if curve_on else (lambda m: {}))
    ctx = DefenseContext.for_defender(
        cell.settings,
        name,
        cell.seed,
        model=copy.deepcopy(cell.backdoored),
        clean=cell.clean,
        train=cell.train,
        poisoned=cell.poisoned,
        attack=cell.attack,
        target=cell.target,
        recipe=cell.recipe,
        device=cell.device,
        recorder=recorder,
        spec=cell.spec,
        poison_rate=cell.poison_rate,
        rounds=cell.rounds,
        dataset=cell.dataset,
    )
    if curve_on:
        ctx.record(0, 0.0)
    eval_before, start = recorder.eval_seconds, time.perf_counter()
    extra = run(ctx)
    seconds = time.perf_counter() - start - (recorder.eval_seconds - eval_before)
    final = cell.evaluate(ctx.model, cell.test)
    removed = extra.pop("removed_rows", None)
    figures = {
        **final,
        "seconds": seconds,
        "epochs": extra.pop("epochs_trained", cell.settings["epochs"]),
        "clean_fraction": cell.settings["clean_fraction"],
        "n_clean": len(cell.clean),
        "batch_size": ctx.defender_batch,
        **extra,
    }
    return Outcome(ctx.model, figures, recorder.rows if curve_on else [], removed)
