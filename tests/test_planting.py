"""The attacker's training budget: rounds of the recipe's epochs until its shadow-split check passes."""

import pytest
import torch
from conftest import make_blobs

from sequela import planting
from sequela.attacks.registry import ATTACKS, choose_poison_indices
from sequela.checker import Checker
from sequela.errors import ConfigError
from sequela.recipe import Recipe
from sequela.training import train_classifier

RECIPE = Recipe(model="small_cnn", epochs=2, batch_size=32, lr=0.05, width=8)
SPEC = {"arch": "small_cnn", "in_channels": 1, "num_classes": 4, "mean": [0.2], "std": [0.25], "width": 8}


def poisoned_blobs():
    train, shadow = make_blobs(400, seed=0), make_blobs(200, seed=3)
    g = torch.Generator().manual_seed(0)
    attack = ATTACKS["badnets"].create({"size": 3}, train.x, train.y, 0, g)
    return train, shadow, attack, choose_poison_indices(train.y, 0, 0.1, g)


def test_training_stops_at_the_first_round_that_passes():
    train, shadow, attack, poisoned = poisoned_blobs()
    answers = iter([False, True, True])
    run = train_classifier(train, SPEC, RECIPE, torch.device("cpu"), 0, evaluate=lambda m: {}, attack=attack,
                           poisoned=poisoned, until=lambda m: next(answers), max_rounds=3)
    assert run.rounds == 2
    assert [row["epoch"] for row in run.curve] == [1, 2, 3, 4]  # epochs count on across rounds
    # each round is a new cosine cycle from the recipe's rate
    assert run.curve[2]["lr"] > run.curve[1]["lr"]


def test_training_never_exceeds_max_rounds():
    train, shadow, attack, poisoned = poisoned_blobs()
    run = train_classifier(train, SPEC, RECIPE, torch.device("cpu"), 0, evaluate=lambda m: {}, attack=attack,
                           poisoned=poisoned, until=lambda m: False, max_rounds=2)
    assert run.rounds == 2 and len(run.curve) == 4


def test_planting_check_reads_the_shadow_split_asr():
    train, shadow, attack, poisoned = poisoned_blobs()
    check = planting.PlantingCheck(shadow, attack, 0, min_asr=0.9)
    run = train_classifier(train, SPEC, RECIPE, torch.device("cpu"), 0, evaluate=lambda m: {}, attack=attack,
                           poisoned=poisoned, until=check, max_rounds=4)
    asr = [r["shadow_asr"] for r in check.rounds]
    assert len(asr) == run.rounds
    assert all(a < 0.9 for a in asr[:-1])                 # every round but the last missed the target
    assert asr[-1] >= 0.9 or run.rounds == 4
    strict = planting.PlantingCheck(shadow, attack, 0, min_asr=1.01)  # unreachable: never passes
    assert not strict(run.model) and strict.rounds[0]["shadow_asr"] == pytest.approx(asr[-1])


def test_budget_needs_a_target_for_every_grid_attack():
    params = {"attack": {"budget": {"max_rounds": 2, "min_asr": {"badnets": 0.95}}}}
    planting.check(Checker(params), ["badnets"])
    with pytest.raises(ConfigError, match="missing: blended"):
        planting.check(Checker(params), ["badnets", "blended"])
    params["attack"]["budget"]["min_asr"]["badnets"] = 1.5
    with pytest.raises(ConfigError, match="min_asr.badnets"):
        planting.check(Checker(params), ["badnets"])
