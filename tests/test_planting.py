"""The attacker's training budget: rounds of the recipe's epochs until its shadow-split check passes."""

import ast
from pathlib import Path

import pytest
import torch

from conftest import make_blobs
from sequela.attacks.registry import ATTACKS, choose_poison_indices
from sequela.pipeline.checker import Checker
from sequela.pipeline.errors import ConfigError
from sequela.training import attacker
from sequela.training.classifier import train_classifier
from sequela.training.recipe import Recipe
from sequela.training.sbl import train_sbl

ROOT = Path(__file__).resolve().parents[1]
RECIPE = Recipe(model="small_cnn", epochs=2, batch_size=32, lr=0.05, width=8)
SPEC = {"arch": "small_cnn", "in_channels": 1, "num_classes": 4, "mean": [0.2], "std": [0.25], "width": 8}


def poisoned_blobs():
    train, shadow = make_blobs(400, seed=0), make_blobs(200, seed=3)
    g = torch.Generator().manual_seed(0)
    attack = ATTACKS["badnets"].create({"size": 3}, train.x, train.y, 0, g)
    return train, shadow, attack, choose_poison_indices(train.y, 0, 0.1, g)


def train_poisoned(blobs, until, max_rounds: int):
    """The plain recipe on the poisoned blobs, ending by `until` within `max_rounds` rounds."""
    train, _, attack, poisoned = blobs
    return train_classifier(
        train,
        SPEC,
        RECIPE,
        torch.device("cpu"),
        0,
        evaluate=lambda m: {},
        attack=attack,
        poisoned=poisoned,
        until=until,
        max_rounds=max_rounds,
    )


def test_training_stops_at_the_first_round_that_passes():
    blobs = poisoned_blobs()
    answers = iter([False, True, True])
    run = train_poisoned(blobs, lambda m: next(answers), 3)
    assert run.rounds == 2
    assert [row["epoch"] for row in run.curve] == [1, 2, 3, 4]  # epochs count on across rounds
    # each round is a new cosine cycle from the recipe's rate
    assert run.curve[2]["lr"] > run.curve[1]["lr"]


def test_training_never_exceeds_max_rounds():
    blobs = poisoned_blobs()
    run = train_poisoned(blobs, lambda m: False, 2)
    assert run.rounds == 2 and len(run.curve) == 4


def test_planting_check_reads_the_shadow_split_asr():
    blobs = poisoned_blobs()
    _, shadow, attack, _ = blobs
    check = attacker.PlantingCheck(shadow, attack, 0, min_asr=0.9)
    run = train_poisoned(blobs, check, 4)
    asr = [r["held_out_asr"] for r in check.rounds]
    assert len(asr) == run.rounds
    assert all(a < 0.9 for a in asr[:-1])  # every round but the last missed the target
    assert asr[-1] >= 0.9 or run.rounds == 4
    strict = attacker.PlantingCheck(shadow, attack, 0, min_asr=1.01)  # unreachable: never passes
    assert not strict(run.model) and strict.rounds[0]["held_out_asr"] == pytest.approx(asr[-1])


def test_budget_needs_a_target_for_every_grid_attack():
    params = {"attack": {"budget": {"max_rounds": 2, "min_asr": {"badnets": 0.95}}}}
    attacker.check(Checker(params), ["badnets"])
    with pytest.raises(ConfigError, match="missing: blended"):
        attacker.check(Checker(params), ["badnets", "blended"])
    params["attack"]["budget"]["min_asr"]["badnets"] = 1.5
    with pytest.raises(ConfigError, match="min_asr.badnets"):
        attacker.check(Checker(params), ["badnets"])


def test_a_fixed_number_of_rounds_trains_exactly_that_many_and_still_records_the_check():
    blobs = poisoned_blobs()
    _, shadow, attack, _ = blobs
    runs = {}
    for rounds in (None, 2):
        rule = {"max_rounds": 3, "rounds": rounds, "min_asr": {"badnets": 0.0}}  # the rule stops after round 1
        check, max_rounds = attacker.budget(rule, "badnets", shadow, attack, 0)
        run = train_poisoned(blobs, check, max_rounds)
        runs[rounds] = (run.rounds, len(check.rounds))
    assert runs == {None: (1, 1), 2: (2, 2)}


@pytest.mark.parametrize("rounds", [0, 4, 1.5, True, "2"])
def test_a_fixed_number_of_rounds_is_an_integer_within_max_rounds(rounds):
    params = {"attack": {"budget": {"max_rounds": 3, "rounds": rounds, "min_asr": {"badnets": 0.95}}}}
    with pytest.raises(ConfigError, match="attack.budget.rounds.*from 1 to"):
        attacker.check(Checker(params), ["badnets"])
    params["attack"]["budget"]["rounds"] = 3
    attacker.check(Checker(params), ["badnets"])


SBL_SETTINGS = {
    "size": 3,
    "rho": 0.05,
    "clean_share": 0.1,
    "task2_lr_factor": 0.1,
    "task2_epochs_factor": 0.5,
    "ewc_lambda": 1.0,
}


def test_the_attackers_training_is_sbls_two_tasks_for_sbl_and_the_plain_recipe_otherwise():
    train, shadow, _, _ = poisoned_blobs()
    g = torch.Generator().manual_seed(0)
    attack = ATTACKS["sbl"].create({"size": 3}, train.x, train.y, 0, g)
    poisoned = choose_poison_indices(train.y, 0, 0.1, g)
    cpu = torch.device("cpu")
    common = dict(evaluate=lambda m: {}, attack=attack, poisoned=poisoned, target=0, desc="t", max_rounds=1)
    run = attacker.train_backdoored(train, SPEC, RECIPE, cpu, 0, SBL_SETTINGS, until=lambda m: True, **common)
    direct = train_sbl(train, SPEC, RECIPE, cpu, 0, SBL_SETTINGS, until=lambda m: True, **common)
    plain = train_classifier(train, SPEC, RECIPE, cpu, 0, until=lambda m: True, **common)
    assert len(run.curve) == RECIPE.epochs + 1  # task 1's epochs, then half as many for task 2
    for (name, w), v in zip(run.model.state_dict().items(), direct.model.state_dict().values()):
        assert torch.equal(w, v), name
    assert any(
        not torch.equal(w, p) for w, p in zip(run.model.state_dict().values(), plain.model.state_dict().values())
    )


def calls_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
    }


TRAINING = {"train_classifier", "train_sbl", "fit", "sam_fit"}


def test_every_stage_that_trains_a_backdoored_model_trains_it_through_the_one_function():
    # An ablation point that plants its own poison (poison_rate) trains as train@ does, SBL included:
    # train@ calls train_backdoored; ablate@ calls sweep_point.attack_cell, which calls plant_and_train,
    # which calls train_backdoored.
    assert "train_backdoored" in calls_in(ROOT / "stages" / "train.py")
    assert "attack_cell" in calls_in(ROOT / "stages" / "ablate.py")
    assert "plant_and_train" in calls_in(ROOT / "src" / "sequela" / "sweep_point.py")
    tree = ast.parse((ROOT / "src" / "sequela" / "training" / "attacker.py").read_text())
    plant_and_train = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "plant_and_train")
    assert "train_backdoored" in {
        getattr(c.func, "id", "") for c in ast.walk(plant_and_train) if isinstance(c, ast.Call)
    }
    for path in (
        ROOT / "stages" / "train.py",
        ROOT / "stages" / "ablate.py",
        ROOT / "src" / "sequela" / "sweep_point.py",
    ):
        assert not calls_in(path) & TRAINING, path
