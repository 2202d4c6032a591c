"""The attacker's own work on its own data: its training budget, its check, its surrogate model.

How long the victim model trains on the poisoned data.

The attacker wants a backdoor that works, so it checks its own model before shipping it, on data it
holds and the victim never trained on: its held-out split (training-distribution images, the prepared
dataset's `shadow` split, which is also where the membership shadow model trains; the test split is
never read). The rule, fixed before any run (params.yaml `attack.budget`): train the recipe's
epochs; while the attack success on the held-out split's non-target images is below the
attack's `min_asr`, train another round of the recipe's epochs (a new cosine cycle, weights and
momentum kept), at most `max_rounds` rounds in all. `min_asr` is the planting target a reviewer
holds every attack to (0.95; 0.90 for the input-specific LF and InputAware triggers). With
`attack.budget.rounds` set (a study of how long the victim trained: the `victim_rounds` sweep), the
rule is off and the victim trains exactly that many rounds; the held-out check is still recorded each
round, so the report's planting rule reads it as before.

Where an attack still misses its target after `max_rounds`, the model is kept as it is and the
report leaves its cells out of the pooled claims (report/claims.py's planting rule). Every model a
backdoored one is compared with (the clean reference, the membership shadow model, the training-time
defenses' retraining) trains the rounds the backdoored model trained: train_classifier without
`until` trains exactly `max_rounds` rounds.

A trigger built against a trained model (LF) is built against the attacker's `surrogate`, a clean
model trained on the held-out split: the defender's clean reference is never the attacker's to use.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from sequela.attacks.base import Attack
from sequela.datasets.splits import Dataset, Split
from sequela.engine.device import seed_everything
from sequela.metrics import evaluate
from sequela.pipeline.checker import Checker, fail
from sequela.training.classifier import Trained, train_classifier
from sequela.training.recipe import Recipe
from sequela.training.sbl import train_sbl

# Added to the cell's seed for the surrogate, so that its initialisation and batch order are not those
# of any model the cell trains with `seed` itself (the clean reference, the membership shadow model).
SURROGATE_SEED_OFFSET = 7919


def check(c: Checker, attacks, key: str = "attack.budget", known=None) -> None:
    """`attack.budget`: `max_rounds`, `rounds` (null, or an integer up to `max_rounds`: the clean
    reference keeps a snapshot of each round up to `max_rounds` only) and a `min_asr` in [0, 1] for
    every attack in `attacks` (and, given the `known` attack names, for every entry, each of which
    must name one)."""
    c.integer(f"{key}.max_rounds")
    fixed = c.get(f"{key}.rounds", None)  # absent: the rule
    if fixed is not None:
        check_rounds(c, f"{key}.rounds", fixed, c.get(f"{key}.max_rounds"))
    targets = c.get(f"{key}.min_asr")
    if not isinstance(targets, dict):
        fail(f"{key}.min_asr", targets, "a mapping attack -> the held-out ASR that ends training")
    for name in attacks:
        if name not in targets:
            fail(f"{key}.min_asr", targets, f"an entry for every grid attack (missing: {name})")
        c.number(f"{key}.min_asr.{name}", 0.0, 1.0, low_open=False, high_open=False)
    for name in targets if known is not None else ():
        if name not in known:
            fail(f"{key}.min_asr", targets, f"attack names only (one of {', '.join(known)}; got {name})")
        c.number(f"{key}.min_asr.{name}", 0.0, 1.0, low_open=False, high_open=False)


def check_rounds(c: Checker, key: str, rounds, max_rounds: int, shown=None) -> None:
    """A fixed number of rounds: an integer from 1 to `max_rounds` (`shown`: the value as the user wrote it)."""
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1 <= rounds <= max_rounds:
        fail(key, rounds if shown is None else shown, f"an integer from 1 to attack.budget.max_rounds ({max_rounds})")


def budget(rule: dict, name: str, held_out: Split, attack: Attack, target: int) -> tuple[PlantingCheck, int]:
    """`until` and `max_rounds` for train_backdoored from params.yaml's `attack.budget`: the rule
    (stop at the first round whose held-out ASR reaches `min_asr`, at most `max_rounds`), or with
    `rounds` set exactly that many rounds (a check that never stops training, kept for its record)."""
    if rule.get("rounds") is not None:
        return PlantingCheck(held_out, attack, target, math.inf), rule["rounds"]
    return PlantingCheck(held_out, attack, target, rule["min_asr"][name]), rule["max_rounds"]


def held_out_figures(model: torch.nn.Module, held_out: Split, attack: Attack, target: int) -> dict[str, float]:
    """The attacker's own check: CA and ASR on its held-out split."""
    figures = evaluate(model, held_out, attack, target)
    return {"held_out_ca": figures["ca"], "held_out_asr": figures["asr"]}


class PlantingCheck:
    """`until` for classifier.train_classifier: true once the held-out split's ASR reaches `min_asr`.
    Keeps each round's figures (`rounds`), which the train stage records."""

    def __init__(self, held_out: Split, attack: Attack, target: int, min_asr: float):
        self.held_out, self.attack, self.target, self.min_asr = held_out, attack, target, min_asr
        self.rounds: list[dict[str, float]] = []

    def __call__(self, model: torch.nn.Module) -> bool:
        figures = held_out_figures(model, self.held_out, self.attack, self.target)
        self.rounds.append(figures)
        return figures["held_out_asr"] >= self.min_asr


def train_backdoored(
    train: Split,
    spec: dict,
    recipe: Recipe,
    device: torch.device,
    seed: int,
    settings: dict,
    attack: Attack,
    poisoned: torch.Tensor,
    target: int,
    until: PlantingCheck,
    max_rounds: int,
    evaluate: Callable[[torch.nn.Module], dict[str, float]],
    desc: str,
) -> Trained:
    """The attacker's training of its backdoored model under the budget rule, for the train stage and
    for an ablation point that plants its own poison alike: SBL (`attack.sequential`) trains its two
    tasks (the backdoor task with SAM, then the clean task under EWC) with its `settings`; every other
    attack trains the plain recipe on the poisoned training set."""
    how = dict(
        evaluate=evaluate,
        attack=attack,
        poisoned=poisoned,
        target=target,
        desc=desc,
        until=until,
        max_rounds=max_rounds,
    )
    if attack.sequential:
        return train_sbl(train, spec, recipe, device, seed, settings, **how)
    return train_classifier(train, spec, recipe, device, seed, **how)


def surrogate(shadow: Split, spec: dict, recipe: Recipe, device: torch.device, seed: int) -> torch.nn.Module:
    """The attacker's clean model: one round of the recipe on its held-out split (data the victim never
    trains on and the defender never holds), seeded apart from every model of the cell."""
    return train_classifier(
        shadow, spec, recipe, device, seed + SURROGATE_SEED_OFFSET, evaluate=lambda m: {}, desc="attacker's surrogate"
    ).model


def plant_and_train(
    ds: Dataset, spec: dict, recipe: Recipe, device: torch.device, seed: int, name: str, settings: dict, desc: str
) -> tuple[Attack, torch.Tensor, Trained]:
    """Attack `name` planted and its backdoored model trained in one process, as the poison and train
    stages do one after the other (an ablation point that changes the attacker's setting). `settings`
    is params.yaml's `attack` section. Each step starts from the seed, so the attacks of one cell do
    not depend on which ran before."""
    from sequela.attacks.registry import plant

    rate, target, rule = settings["poison_rate"], settings["target"], settings["budget"]
    seed_everything(seed)
    trigger, poisoned = plant(
        name,
        settings[name],
        ds.train.x,
        ds.train.y,
        target,
        rate,
        seed,
        device,
        lambda: surrogate(ds.shadow, spec, recipe, device, seed),
    )
    trigger, poisoned = trigger.to(device), poisoned.to(device)
    seed_everything(seed)
    planted, max_rounds = budget(rule, name, ds.shadow.to(device), trigger, target)
    run = train_backdoored(
        ds.train,
        spec,
        recipe,
        device,
        seed,
        settings[name],
        trigger,
        poisoned,
        target,
        planted,
        max_rounds,
        evaluate=lambda m: {},
        desc=desc,
    )
    return trigger, poisoned, run
