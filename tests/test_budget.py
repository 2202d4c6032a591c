"""Every model compared with a backdoored one trains on its budget, and the attacker never reads the
defender's models: the round snapshots of the clean reference, the retraining of the training-time
defenses, and the poison stage's dependencies."""

from pathlib import Path

import torch
import yaml

from conftest import make_blobs
from sequela.defenses.registry import DEFENSES
from sequela.training.attacker import surrogate
from sequela.training.classifier import train_classifier
from sequela.training.recipe import Recipe
from test_defenses import context

ROOT = Path(__file__).resolve().parents[1]
SPEC = {"arch": "small_cnn", "in_channels": 1, "num_classes": 4, "mean": [0.2], "std": [0.25], "width": 4}
RECIPE = Recipe(model="small_cnn", epochs=2, batch_size=32, lr=0.05, crop_padding=1, width=4)


def weights(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_without_until_training_runs_every_round_and_each_snapshot_is_the_shorter_run():
    train = make_blobs(96, seed=3)
    snapshots = {}
    run = train_classifier(
        train,
        SPEC,
        RECIPE,
        torch.device("cpu"),
        0,
        evaluate=lambda m: {},
        max_rounds=3,
        after_round=lambda m, r, s: snapshots.__setitem__(r, weights(m)),
    )
    assert run.rounds == 3 and len(run.curve) == 3 * RECIPE.epochs and sorted(snapshots) == [1, 2, 3]
    # The reference of a model trained r rounds is the snapshot after r rounds: the same weights as
    # a run of r rounds alone (same seed, same batches, same warm restarts).
    for rounds in (1, 2):
        alone = train_classifier(
            train, SPEC, RECIPE, torch.device("cpu"), 0, evaluate=lambda m: {}, max_rounds=rounds
        ).model.state_dict()
        assert all(torch.equal(alone[k], snapshots[rounds][k]) for k in alone)
    assert not all(torch.equal(snapshots[1][k], snapshots[2][k]) for k in snapshots[1])


def test_until_still_stops_at_the_first_round_it_holds():
    calls = []
    run = train_classifier(
        make_blobs(64, seed=4),
        SPEC,
        RECIPE,
        torch.device("cpu"),
        0,
        evaluate=lambda m: {},
        until=lambda m: calls.append(1) or len(calls) == 2,
        max_rounds=3,
    )
    assert run.rounds == 2 and len(run.curve) == 2 * RECIPE.epochs


def test_training_time_defenses_retrain_the_rounds_the_backdoored_model_trained(planted):
    recipe = Recipe(model="small_cnn", epochs=2, batch_size=32, lr=0.05, crop_padding=1, width=8)
    for name in ("spectral", "abl"):
        ctx = context(planted, name, recipe=recipe)
        ctx.rounds = 2
        out = DEFENSES[name].run(ctx)
        extra = 3 if name == "abl" else 0  # ABL's unlearning epochs follow its training
        assert out["epochs_trained"] == 2 * recipe.epochs + extra
        assert len(ctx.recorder.rows) == 2 * recipe.epochs + extra


def test_the_attackers_surrogate_is_seeded_apart_from_the_cells_models():
    # Even on the same images, the surrogate is not the model the cell's own seed would train.
    shadow = make_blobs(96, seed=5)
    mine = surrogate(shadow, SPEC, RECIPE, torch.device("cpu"), seed=0).state_dict()
    cells = train_classifier(shadow, SPEC, RECIPE, torch.device("cpu"), 0, evaluate=lambda m: {}).model.state_dict()
    assert not any(torch.equal(cells[k], mine[k]) for k in mine if k.endswith("weight"))


def test_no_poison_stage_reads_the_defenders_clean_reference_or_the_shadow_model():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        if name in ("poison", "train"):
            for dep in stage["deps"]:
                assert not dep.rstrip("/").endswith(("/clean", "/shadow")) and "/clean/" not in dep, (name, dep)
    # ... and the stages that compare with the clean reference learn how long its backdoored model trained.
    for name in ("defend", "measure"):
        assert any(dep.endswith("${item.attack}-none.json") for dep in stages[name]["deps"]), name
