"""The ablation sweeps' definition: one setting changed, the main grid's point recognised."""

from pathlib import Path

import pytest
import yaml

from sequela import sweeps
from sequela.pipeline.errors import ConfigError
from sequela.validate import validate

PARAMS = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())


def test_a_point_changes_its_one_setting_and_nothing_else():
    point = sweeps.with_value(PARAMS, "sft_max_lr1", 0.05)
    assert point["defense"]["sft"]["max_lr1"] == 0.05
    assert PARAMS["defense"]["sft"]["max_lr1"] == 0.1  # the main params are untouched
    point["defense"]["sft"]["max_lr1"] = PARAMS["defense"]["sft"]["max_lr1"]
    assert point == PARAMS


@pytest.mark.parametrize("sweep", sorted(sweeps.SWEEPS))
def test_every_sweep_names_a_key_that_exists_and_passes_validation_at_its_main_value(sweep):
    main = sweeps.main_value(PARAMS, sweep, recipe_batch=16)
    if sweep == "victim_rounds":  # the main grid trains by the budget rule: no fixed number of rounds
        assert main is None
        main = 1
    assert main is not None
    validate(sweeps.with_value(PARAMS, sweep, main))


def test_victim_rounds_is_never_the_main_grids_point_and_stays_within_the_clean_references_rounds():
    assert sweeps.from_main_grid(PARAMS, "victim_rounds", 1, 16) == []
    params = yaml.safe_load(yaml.safe_dump(PARAMS))
    max_rounds = params["attack"]["budget"]["max_rounds"]
    params["ablation"]["points"] = [f"victim_rounds-{max_rounds}"]
    validate(params)
    params["ablation"]["points"] = [f"victim_rounds-{max_rounds + 1}"]
    with pytest.raises(ConfigError, match=f"victim_rounds-{max_rounds + 1}.*max_rounds"):
        validate(params)


def test_the_main_grids_value_is_read_not_computed():
    assert sweeps.from_main_grid(PARAMS, "clean_fraction", 0.5, 16) == ["ft", "sft"]
    assert sweeps.from_main_grid(PARAMS, "clean_fraction", 0.2, 16) == []
    # the defender's null batch is the recipe's batch
    assert sweeps.from_main_grid(PARAMS, "batch_size", 16, 16) == ["ft", "sft"]
    assert sweeps.from_main_grid(PARAMS, "batch_size", 8, 16) == []
    # the backdoored model is always in the main grid; a defense only where grid.defenses has it
    only_ft = sweeps.with_value(PARAMS, "clean_fraction", 0.5)
    only_ft["grid"]["defenses"] = ["ft"]
    assert sweeps.from_main_grid(only_ft, "poison_rate", 0.1, 16) == ["none", "clean", "ft"]
    assert sweeps.same_value(1.0e-3, 0.001) and not sweeps.same_value(1.0e-3, 1.0e-2)


def test_a_sweep_on_a_dataset_outside_the_grid_is_refused():
    params = yaml.safe_load(yaml.safe_dump(PARAMS))
    params["ablation"]["datasets"] = ["mnist"]
    with pytest.raises(ConfigError, match=r"ablation.datasets = 'mnist' .*allowed: one of digits"):
        validate(params)
