"""SBL (sequential backdoor learning): the attacker's two tasks, SAM's ascent, the EWC anchor."""

import pytest
import torch
import torch.nn.functional as F

from conftest import make_blobs
from sequela import models
from sequela.attacks.registry import ATTACKS, choose_poison_indices
from sequela.metrics import evaluate
from sequela.training.recipe import Recipe
from sequela.training.sbl import fisher_diagonal, task_split, train_sbl
from sequela.training.sharpness import ascent

SPEC = {
    "arch": "small_cnn",
    "in_channels": 1,
    "num_classes": 4,
    "mean": [0.2],
    "std": [0.25],
    "width": 8,
    "input_shape": [1, 8, 8],
}
SETTINGS = {
    "size": 3,
    "rho": 0.05,
    "clean_share": 0.1,
    "task2_lr_factor": 0.1,
    "task2_epochs_factor": 0.667,
    "ewc_lambda": 1.0,
}


def test_task_two_holds_only_clean_rows_apart_from_task_one():
    poisoned = torch.tensor([0, 5, 9, 30])
    first, second = task_split(100, poisoned, 0.1, seed=0)
    assert len(second) == 10 and not set(second.tolist()) & set(poisoned.tolist())
    assert sorted(first.tolist() + second.tolist()) == list(range(100))
    assert torch.equal(task_split(100, poisoned, 0.1, seed=0)[1], second)  # seeded


def test_plain_sam_ascends_exactly_rho_and_the_fisher_is_the_mean_squared_per_image_gradient():
    model = models.build_from_spec(SPEC).eval()
    data = make_blobs(6, seed=0)
    x, y = data.x.float() / 255, data.y
    F.cross_entropy(model(x), y).backward()
    moved = ascent(model, rho=0.05, adaptive=False)
    assert torch.isclose(torch.norm(torch.stack([eps.norm() for _, eps in moved])), torch.tensor(0.05), rtol=1e-4)
    model.zero_grad()
    with torch.no_grad():
        for p, eps in moved:
            p.sub_(eps)
    fisher = fisher_diagonal(model, x, y)
    expected = {k: torch.zeros_like(p) for k, p in model.named_parameters()}
    for i in range(len(x)):
        model.zero_grad()
        F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        for k, p in model.named_parameters():
            expected[k] += p.grad.pow(2) / len(x)
    assert all(torch.allclose(fisher[k], expected[k], rtol=1e-4, atol=1e-9) for k in expected)


def test_the_fisher_runs_on_the_channels_last_compact_cnn_and_leaves_its_layout_as_it_was():
    # The 32x32 sets' CPU recipe model converts its input to channels_last, which vmap cannot do.
    spec = {
        "arch": "compact_cnn",
        "in_channels": 3,
        "num_classes": 4,
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
        "width": 4,
        "input_shape": [3, 16, 16],
    }
    model = models.build_from_spec(spec).eval()
    assert model.channels_last
    x, y = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 3, 0])
    fisher = fisher_diagonal(model, x, y)
    assert model.channels_last
    for k, p in model.named_parameters():
        expected = torch.zeros_like(p)
        for i in range(len(x)):
            (grad,) = torch.autograd.grad(F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]), p)
            expected += grad.pow(2) / len(x)
        assert torch.allclose(fisher[k], expected, rtol=1e-4, atol=1e-9), k


@pytest.fixture(scope="module")
def trained():
    train, test = make_blobs(600, seed=0), make_blobs(200, seed=1)
    g = torch.Generator().manual_seed(0)
    attack = ATTACKS["sbl"].create({"size": 3}, train.x, train.y, 0, g)
    poisoned = choose_poison_indices(train.y, 0, 0.1, g)
    recipe = Recipe(model="small_cnn", epochs=12, batch_size=32, lr=0.05, crop_padding=1, width=8)
    runs = {
        lam: train_sbl(
            train,
            SPEC,
            recipe,
            torch.device("cpu"),
            0,
            {**SETTINGS, "ewc_lambda": lam},
            evaluate=lambda m: evaluate(m, test, attack, 0),
            attack=attack,
            poisoned=poisoned,
            target=0,
        )
        for lam in (0.0, 1e4)
    }
    return runs, test, attack, recipe


def test_sbl_plants_the_backdoor_through_both_tasks(trained):
    runs, test, attack, recipe = trained
    run = runs[1e4]
    assert len(run.curve) == recipe.epochs + round(recipe.epochs * 0.667) and run.rounds == 1
    final = evaluate(run.model, test, attack, 0)
    assert final["ca"] > 0.9 and final["asr"] > 0.9, final


def test_the_ewc_anchor_keeps_task_two_near_the_end_of_task_one(trained):
    runs, test, attack, recipe = trained
    # Both runs share task 1 exactly (same seed, same data): the curves agree until task 2 starts.
    assert runs[0.0].curve[: recipe.epochs] == runs[1e4].curve[: recipe.epochs]
    end_of_task1 = runs[0.0].curve[recipe.epochs - 1]
    drift = {
        lam: abs(run.curve[-1]["asr"] - end_of_task1["asr"]) + abs(run.curve[-1]["ca"] - end_of_task1["ca"])
        for lam, run in runs.items()
    }
    distance = {
        lam: sum((p - q).pow(2).sum() for p, q in zip(run.model.parameters(), runs[1e4].model.parameters()))
        for lam, run in runs.items()
    }
    assert distance[0.0] > 0  # the anchor changed task 2
    assert drift[1e4] <= drift[0.0] + 1e-9, drift
