"""The sequela of a reused model: the transfer and encoder paradigms' downstream models
(src/sequela/downstream.py), measured on the downstream task with the standalone measures.

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
- PGD accuracy (the mean over the budgets) on a seeded subset of the downstream test images, with `sequela.pgd`'s settings.

"clean" (the head on the clean upstream model or encoder) is the reference: a defended model that
re-injects faster than it has kept something of the backdoor.
"""

from __future__ import annotations

import time

import torch

from sequela.checker import Checker
from sequela.engine import Augment, predict_logits, seed_everything
from sequela.measures import reinject, retune, robustness
from sequela.measures.membership import MEMBER_STREAM, attacks_on_logits, metric_figures
from sequela.measures.robustness import pgd_figures
from sequela.workers import run_units


def check(c: Checker) -> None:
    """The settings the paradigms' sequela read: re-injection, retuning and PGD (no shadow model downstream)."""
    reinject.check(c, [])
    retune.check(c)
    robustness.check(c)


def members(n_train: int, n_test: int, seed: int) -> torch.Tensor:
    """Sorted training rows scored as members: a seeded draw of min(n_train, n_test)."""
    order = torch.randperm(n_train, generator=torch.Generator().manual_seed(MEMBER_STREAM + seed))
    return order[:min(n_train, n_test)].sort().values


def measure(model: torch.nn.Module, cell, settings: dict) -> dict:
    """Every sequela measure of one downstream model. `cell` is a `downstream.Cell` (its data, trigger,
    target, recipe and seed); `settings` is params.yaml's `sequela` section."""
    start = time.perf_counter()
    seed_everything(cell.seed)
    ds, r, p = cell.ds, settings["reinject"], settings["pgd"]
    rows = members(len(ds.train), len(ds.test), cell.seed)
    mia = attacks_on_logits(predict_logits(model, ds.train.x[rows], float32=True), ds.train.y[rows],
                            predict_logits(model, ds.test.x, float32=True), ds.test.y)
    reinjection = reinject.Reinjection.from_settings(r, cell.recipe.momentum, cell.recipe.weight_decay, cell.seed)
    augment = Augment(cell.recipe.crop_padding, cell.recipe.flip)
    reinjected = reinject.repeated(reinjection, r["draws"], model, ds.train, cell.test, cell.trigger, cell.target, augment)
    retuning = retune.Retuning.from_settings(settings["retune"], len(ds.train), cell.recipe.batch_size, cell.seed)
    poisons = retune.non_target_rows(ds.train.y, cell.target, retuning.k, cell.seed)
    retuning_set = retune.retuning_set(ds.train, ds.train, poisons, retuning.k, cell.trigger, cell.target, cell.device)
    retuned = retuning.run(model, *retuning_set, cell.test, cell.trigger, cell.target, augment)
    return {**metric_figures(mia), "mia_n": len(rows), **reinject.figures(reinjected), **retuned,
            **pgd_figures(model, ds.test, p, cell.seed),
            "sequela_seconds": time.perf_counter() - start}


# What the forked workers of measure_all read (workers.run_units sends a unit's name, not its data).
_JOB: tuple = ()


def _measure_one(name: str) -> dict:
    results, cell, settings = _JOB
    return measure(results[name].model, cell, settings)


def measure_all(results: dict, cell, settings: dict) -> None:
    """Add each model's sequela figures to its figures (`results`: name -> downstream.Result). The
    models are independent units: on a CPU they run side by side, one thread each (workers.py)."""
    global _JOB
    _JOB = (results, cell, settings)
    try:
        names = list(results)
        for name, figures in zip(names, run_units(_measure_one, names, cell.device)):
            results[name].figures.update(figures)
    finally:
        _JOB = ()
