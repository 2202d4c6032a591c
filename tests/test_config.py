"""Bad values in params.yaml stop a stage before any work, with one line naming key, value, allowed."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sequela.pipeline.errors import ConfigError
from sequela.sweeps import with_key
from sequela.validate import validate

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def with_value(key: str, value):
    return with_key(PARAMS, key, value)


def test_shipped_params_are_valid():
    validate(PARAMS)


@pytest.mark.parametrize(
    "key, value, allowed",
    [
        ("grid.datasets", ["imagenet"], "digits"),
        ("grid.attacks", ["badnet"], "badnets"),
        ("grid.defenses", ["finetune"], "sft"),
        ("attack.poison_rate", 1.5, "(0.0, 1.0)"),
        ("attack.poison_rate", 0, "(0.0, 1.0)"),
        ("attack.target", 10, "[0, 9]"),
        ("attack.target", -1, "[0, 9]"),
        ("defense.epochs", 0, "positive integer"),
        ("curves.eval_n", 0, "positive integer"),
        ("defense.epochs", 2.5, "positive integer"),
        ("recipe.digits.epochs", -3, "positive integer"),
        ("defense.clean_fraction", 1.2, "(0.0, 1.0]"),
        ("recipe.digits.model", "vgg", "small_cnn"),
        ("recipe.digits.cpu_bf16", "yes", "true or false"),
        ("grid.seeds", [0, -1], "non-negative integers"),
        ("transfer.upstream", ["mnist"], "digits"),  # must be a grid dataset: its models are shipped
        ("transfer.downstream", ["digits"], "other than the upstream"),
        ("transfer.attacks", ["wanet2"], "badnets"),
        ("transfer.target", 10, "[0, 9]"),
        ("transfer.max_train", 5, "at least two images per class"),
        ("encoder.pretrain", ["digits-rot90"], "digits"),  # no recipe: no encoder architecture
        ("encoder.target", 10, "[0, 9]"),
        ("encoder.simclr.batch_size", 1, ">= 2"),
        ("encoder.simclr.temperature", 0, "(0.0, inf)"),
        ("encoder.simclr.max_images", 64, ">= encoder.simclr.batch_size (128)"),
        ("encoder.badencoder.size_at_32", 40, "[1, 32]"),
        ("encoder.head.hidden", 0, "positive integer"),
        ("grid.seeds", [1, 1], "distinct"),
        ("defense.batch_size", 0, "positive integer"),
        ("defense.sft.cycle_steps", 1, "integer >= 2"),
        ("defense.spectral.budget", "all", "one of stated, oracle_rate, oracle_label"),
        ("ablation.attacks", ["wanet2"], "badnets"),
        ("ablation.points", ["clean_fraction-0.0", "clean_fraction-1.0"], "(0, 1]"),
        ("ablation.points", ["sft_cycle_steps-1", "sft_cycle_steps-6"], "integers >= 2"),
        ("ablation.points", ["batch_size-2.5", "batch_size-8"], "an integer"),
        ("ablation.points", ["poison_rate-0.95", "poison_rate-0.05"], "non-target share"),
        ("ablation.points", ["learning_rate-0.1"], "sweep is one of"),
        ("ablation.points", ["clean_fraction-0.2", "clean_fraction-0.2"], "without repeats"),
        ("data.holdout_fraction", 0.5, "(0.0, 0.5)"),
    ],
)
def test_bad_value_names_key_value_and_what_is_allowed(key, value, allowed):
    with pytest.raises(ConfigError) as err:
        validate(with_value(key, value))
    message = str(err.value)
    assert key in message and repr(value if not isinstance(value, list) else value[0]) in message
    assert allowed in message and "\n" not in message


def test_a_32x32_set_trains_with_the_recipe_its_use_names():
    from sequela.training.recipe import Recipe

    assert Recipe.from_params(PARAMS, "gtsrb").model == "compact_cnn"  # the CPU recipe by default
    assert Recipe.from_params(with_value("recipe.gtsrb.use", "gpu"), "gtsrb").model == "resnet18"
    assert Recipe.from_params(PARAMS, "digits").model == "small_cnn"  # a single recipe needs no `use`
    params = with_value("grid.datasets", ["gtsrb"])
    params["ablation"]["datasets"] = params["transfer"]["upstream"] = []
    validate(params)
    params["recipe"]["gtsrb"]["use"] = "tpu"
    with pytest.raises(ConfigError, match=r"recipe.gtsrb.use = 'tpu' .*allowed: one of cpu, gpu"):
        validate(params)
    params["recipe"]["gtsrb"]["use"] = "cpu"
    params["recipe"]["gtsrb"]["cpu"]["epochs"] = 0
    with pytest.raises(ConfigError, match=r"recipe.gtsrb.cpu.epochs = 0"):
        validate(params)


def test_stage_exits_with_one_line_and_no_traceback(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(with_value("attack.poison_rate", 1.5)))
    result = subprocess.run(
        [sys.executable, str(ROOT / "stages" / "prepare.py"), "--dataset", "digits"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "attack.poison_rate" in result.stderr and "1.5" in result.stderr
    assert not (tmp_path / "data").exists()  # nothing was written


def test_missing_gtsrb_stops_prepare_with_one_line_saying_where_to_put_it(tmp_path):
    params = with_value("grid.datasets", ["gtsrb"])
    params["ablation"]["datasets"] = params["transfer"]["upstream"] = []
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    # A proxy nobody listens on: torchvision's download fails at once even on a machine with a network.
    env = {**os.environ, "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "stages" / "prepare.py"), "--dataset", "gtsrb"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "tar -xJf <archive>" in result.stderr and "data/raw" in result.stderr
    assert not (tmp_path / "data" / "prepared").exists()
