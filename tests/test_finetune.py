"""FT and SFT lower the ASR of a planted backdoor, and SFT follows its schedule while doing so."""

import copy

import pytest
import torch

from sequela.defenses.base import DefenseContext
from sequela.defenses.registry import DEFENSES
from sequela.metrics import evaluate
from sequela.pipeline.records import CurveRecorder
from sequela.training.recipe import Recipe

SFT = {"base_lr": 3e-4, "max_lr1": 0.1, "max_lr2": 1e-3, "phase1_fraction": 0.4, "cycle_steps": 20}


def context(planted, params, epochs=6):
    model = copy.deepcopy(planted["model"])
    test, attack, target = planted["test"], planted["attack"], planted["target"]
    recipe = Recipe(model="small_cnn", epochs=1, batch_size=8, lr=0.05, crop_padding=1)
    return DefenseContext(
        model=model,
        clean=planted["train"],
        train=planted["train"],
        poisoned=planted["poisoned"],
        attack=attack,
        target=target,
        recipe=recipe,
        epochs=epochs,
        params=params,
        common={"momentum": 0.9, "weight_decay": 5e-4},
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(0),
        recorder=CurveRecorder(lambda m: evaluate(m, test, attack, target)),
    )


def test_planted_backdoor_is_there(planted):
    before = evaluate(planted["model"], planted["test"], planted["attack"], planted["target"])
    assert before["ca"] > 0.9 and before["asr"] > 0.9


@pytest.mark.parametrize("name, params", [("ft", {"lr": 0.01}), ("sft", SFT)])
def test_fine_tuning_lowers_asr_and_keeps_accuracy(planted, name, params):
    ctx = context(planted, params)
    extra = DEFENSES[name].run(ctx)
    after = evaluate(ctx.model, planted["test"], planted["attack"], planted["target"])
    assert after["asr"] < 0.5 and after["ca"] > 0.85
    assert [row["epoch"] for row in ctx.recorder.rows] == [1, 2, 3, 4, 5, 6]
    if name == "sft":
        # a whole triangular cycle averages base + (peak - base) / 2: peak max_lr1 in phase 1, max_lr2 after
        lrs = [row["lr"] for row in ctx.recorder.rows]
        assert lrs[0] == pytest.approx(3e-4 + (0.1 - 3e-4) / 2, rel=1e-3)
        assert lrs[-1] == pytest.approx(3e-4 + (1e-3 - 3e-4) / 2, rel=1e-3)
        assert extra["steps_per_epoch"] == 100
