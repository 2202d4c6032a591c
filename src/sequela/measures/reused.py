"""The sequela of a reused model: the transfer and encoder paradigms' downstream models
(src/sequela/paradigms/downstream.py), measured on the downstream task with the standalone measures.

- Membership: the metric attacks (loss, confidence, entropy, modified entropy). Members are a
  seeded draw of the downstream training images, which the user trained every model on (the head,
  and FT / SFT of the whole model); non-members are the downstream test images, which no model
  trains on; as many members as non-members where the training split allows. The standalone
  paradigm's shadow-model attack is not run here: it needs a shadow model of each downstream task.
- Re-injection: the attacker fine-tunes the downstream model on `n_clean` clean downstream images
  plus `k` non-target ones stamped with the shipped trigger and relabelled to the downstream target,
  with `sequela.reinject`'s settings; the headline is the mean ASR over epochs and draws.
- The retuning attack (retune.py, `sequela.retune`): the user's downstream training set with its
  first k = round(share x rows) rows replaced by k non-target downstream training images (a seeded draw) stamped with
  the shipped trigger and labelled with the downstream target; P-ASR and CA after. The user
  fine-tunes on all of its downstream data (FT, SFT), so that set is the "defender's clean split".
- PGD accuracy (the mean over the budgets) on a seeded subset of the downstream test images, with
  `sequela.pgd`'s settings.

"clean" (the head on the clean upstream model or encoder) is the reference: a defended model that
re-injects faster than it has kept something of the backdoor.
"""

from __future__ import annotations

import time

from sequela.engine.device import seed_everything
from sequela.measures import registry
from sequela.pipeline.checker import Checker
from sequela.workers import run_units


def check(c: Checker) -> None:
    """The settings the paradigms' sequela read: re-injection, retuning and PGD (no shadow model downstream)."""
    registry.check(c, [], "reused")


def measure_all(results: dict, cell, settings: dict) -> None:
    """Add each model's sequela figures to its figures (`results`: name -> downstream.Result; `cell` a
    `downstream.Cell`; `settings` params.yaml's `sequela` section). The models are independent units:
    on a CPU they run side by side, one thread each (workers.py)."""
    measures = registry.prepare(cell, settings, "reused")

    def measure(name: str) -> dict:
        start = time.perf_counter()
        seed_everything(cell.seed)
        return {**registry.measure(measures, results[name].model), "sequela_seconds": time.perf_counter() - start}

    names = list(results)
    for name, figures in zip(names, run_units(measure, names, cell.device)):
        results[name].figures.update(figures)
