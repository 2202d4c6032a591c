"""An ablation point's backdoored models (src/sequela/sweeps.py): for a sweep of the defender's settings
the main grid's backdoored model and poison of each attack; for a sweep of the attacker's (poison_rate,
victim_rounds) the point's own, planted and trained as the poison and train stages do, beside the clean
reference trained as many rounds (its CA, and its ASR with the point's trigger: the trigger's floor)."""

from __future__ import annotations

from sequela import models, sweeps
from sequela.attacks.registry import load_artefact
from sequela.datasets.splits import Dataset
from sequela.defenses.apply import Defended
from sequela.metrics import evaluate
from sequela.pipeline import layout
from sequela.training.attacker import plant_and_train
from sequela.training.classifier import model_spec


def attack_cell(ds: Dataset, meta: dict, params: dict, point: str, attack: str, common: dict) -> tuple[dict, Defended]:
    """The backdoored model of `attack` at `point` (`<sweep>-<value>`; `params` holds its value) with its
    poison, as the defenses take it, and its own figures and the clean reference's ("none" and "clean",
    attacker sweeps only). `common` is what
    every attack's cell shares: the dataset, the seed, the recipe, the device, the defender's data."""
    dataset, seed, device, recipe = common["dataset"], common["seed"], common["device"], common["recipe"]
    sweep = sweeps.parse_point(point)[0]
    if not sweeps.SWEEPS[sweep].attacker:  # the main grid's backdoored model and poison
        trigger, poisoned, pm = load_artefact(layout.poison(dataset, attack, seed), device)
        model, spec = models.load(layout.model(dataset, attack, seed), device)
        cell = Defended(
            backdoored=model,
            spec=spec,
            poisoned=poisoned,
            attack=trigger,
            target=pm["target"],
            poison_rate=pm["poison_rate"],
            **common,
        )
        return {}, cell
    spec = model_spec(recipe, ds.image_shape, ds.num_classes, meta["mean"], meta["std"])
    trigger, poisoned, run = plant_and_train(
        ds, spec, recipe, device, seed, attack, params["attack"], desc=f"ablate {attack} {point}"
    )
    target = params["attack"]["target"]
    reference, _ = models.load(layout.clean_model(dataset, seed, run.rounds), device)
    test = common["test"]  # already on the device
    clean = {**evaluate(reference, test, trigger, target), "rounds": run.rounds}
    none = {
        **evaluate(run.model, test, trigger, target),
        "seconds": run.seconds,
        "epochs": recipe.epochs * run.rounds,
        "rounds": run.rounds,
        "n_poison": len(poisoned),
    }
    cell = Defended(
        backdoored=run.model,
        spec=spec,
        poisoned=poisoned,
        attack=trigger,
        target=target,
        poison_rate=params["attack"]["poison_rate"],
        **common,
    )
    return {"none": none, "clean": clean}, cell
