"""The learning-rate rule of `sequela defend`: the validated rule keeps the largest factor whose model
holds its validation CA, tries no factor after that one, falls back to the smallest, and scales only
a defense's learning rates; the fixed rule runs the settings once as they are."""

from dataclasses import dataclass

import pytest

from sequela.cli import lr_rule
from sequela.defenses.apply import Outcome

RULE = lr_rule.Rule("validated", (1.0, 0.3, 0.1, 0.03, 0.01), 0.05)


@dataclass
class FakeCell:
    settings: dict


def fake_run(val_ca_by_lr: dict[float, float], calls: list[float]):
    """A defense whose defended 'model' is its FT learning rate, and whose validation CA is looked
    up by that rate."""

    def run(cell):
        lr = cell.settings["ft"]["lr"]
        calls.append(lr)
        return Outcome(model=lr, figures={"seconds": 2.0}, curve=[], removed_rows=None)

    return run, (lambda lr: val_ca_by_lr[round(lr, 6)])


def test_the_largest_factor_that_keeps_validation_ca_is_kept_and_no_smaller_one_is_tried():
    calls = []
    run, val = fake_run({0.01: 0.40, 0.003: 0.80, 0.001: 0.91, 0.0003: 0.93, 0.0001: 0.94}, calls)
    outcome, choice = lr_rule.defend_with(RULE, "ft", FakeCell({"ft": {"lr": 0.01}}), run, val, given_val_ca=0.95)
    assert choice["scale"] == 0.1 and outcome.model == pytest.approx(0.001)  # 0.95 - 0.91 <= 0.05
    assert calls == pytest.approx([0.01, 0.003, 0.001])
    assert [t["scale"] for t in choice["tried"]] == [1.0, 0.3, 0.1]
    assert outcome.figures["seconds"] == 6.0  # the rule's cost: every factor it tried


def test_where_no_factor_keeps_validation_ca_the_smallest_is_kept():
    calls = []
    run, val = fake_run({0.01: 0.1, 0.003: 0.1, 0.001: 0.2, 0.0003: 0.3, 0.0001: 0.5}, calls)
    outcome, choice = lr_rule.defend_with(RULE, "ft", FakeCell({"ft": {"lr": 0.01}}), run, val, given_val_ca=0.95)
    assert choice["scale"] == 0.01 and outcome.model == pytest.approx(0.0001) and len(calls) == 5


def test_the_fixed_rule_runs_once_at_the_given_settings():
    calls = []
    run, val = fake_run({0.01: 0.1}, calls)
    fixed = lr_rule.Rule("fixed", RULE.scales, 0.05)
    outcome, choice = lr_rule.defend_with(fixed, "ft", FakeCell({"ft": {"lr": 0.01}}), run, val, given_val_ca=0.95)
    assert calls == [0.01] and choice == {"rule": "fixed", "scale": 1.0, "tried": []}
    assert outcome.figures["seconds"] == 2.0


def test_only_a_defenses_learning_rates_are_scaled():
    settings = {
        "epochs": 10,
        "ft": {"lr": 0.01},
        "sft": {"base_lr": 3e-4, "max_lr1": 0.1, "max_lr2": 1e-3, "phase1_fraction": 0.4, "cycle_steps": 20},
        "ftsam": {"lr": 0.01, "rho": 2.0, "per_dataset": {"gtsrb": {"rho": 8.0, "lr": 0.02}}},
    }
    sft = lr_rule.scaled_settings(settings, "sft", 0.1)["sft"]
    assert sft == pytest.approx(
        {"base_lr": 3e-5, "max_lr1": 0.01, "max_lr2": 1e-4, "phase1_fraction": 0.4, "cycle_steps": 20}
    )
    ftsam = lr_rule.scaled_settings(settings, "ftsam", 0.5)["ftsam"]
    assert ftsam["lr"] == 0.005 and ftsam["rho"] == 2.0 and ftsam["per_dataset"]["gtsrb"] == {"rho": 8.0, "lr": 0.01}
    assert settings["sft"]["max_lr1"] == 0.1  # the given settings are left as they were
    assert lr_rule.scaled_settings(settings, "sft", 0.1)["ft"] is settings["ft"]


def test_every_defense_sequela_defend_offers_names_its_learning_rates():
    from sequela.defenses.registry import CLEAN_DATA_ONLY

    assert set(CLEAN_DATA_ONLY) <= set(lr_rule.LR_KEYS)


@pytest.mark.parametrize("text", ["", "1,x", "0.1,1", "1,1", "1,0", "-1"])
def test_factors_must_be_positive_distinct_and_falling(text):
    with pytest.raises(ValueError):
        lr_rule.parse_scales(text)
