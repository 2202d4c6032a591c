"""docs/extending.md's worked examples run as the page gives them: the SIG attack adds its signal
wherever nothing clips and checks its section; the head-reset defense runs through the pipeline's
own defense loop and leaves a model whose head was replaced and trained; the target-confidence
measure runs through the measures' registry and tells a backdoored model from an untrained one."""

import copy
import re
import types
from pathlib import Path

import pytest
import torch

from sequela import models
from sequela.defenses.apply import Defended, apply_defense
from sequela.pipeline.checker import Checker
from sequela.pipeline.errors import ConfigError
from sequela.training.recipe import Recipe

PAGE = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def example(heading: str) -> types.ModuleType:
    """The first python block under `heading` of the page, run as a module of its own."""
    section = PAGE.read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    code = "\n".join(line.removeprefix("   ") for line in block.splitlines())  # the list item's indent
    module = types.ModuleType(heading.replace(" ", "_"))
    exec(compile(code, f"{PAGE}:{heading}", "exec"), module.__dict__)
    return module


def test_the_sig_example_adds_its_signal_wherever_nothing_clips():
    sig = example("A new attack: a worked example").Sig
    x = torch.rand(6, 3, 8, 8) * 0.8
    attack = sig.create({"delta": 0.1, "frequency": 2}, x, torch.zeros(6, dtype=torch.long), 0, torch.Generator())
    signal = 0.1 * torch.sin(2 * torch.pi * torch.arange(8) * 2 / 8)
    out = attack.apply(x)
    inside = (x + signal > 0) & (x + signal < 1)
    assert torch.allclose((out - x)[inside], signal.expand_as(x)[inside], atol=1e-6)
    assert torch.equal(out[~inside], (x + signal).clamp(0, 1)[~inside])
    with pytest.raises(ConfigError, match="attack.sig.delta"):
        sig.check_params(Checker({"attack": {"sig": {"delta": 2.0, "frequency": 2}}}), "attack.sig", 8, 8)


def test_the_head_reset_example_runs_through_the_defense_loop(planted):
    head_reset = example("A new defense: a worked example")
    head_reset.check(Checker({"defense": {"head_reset": {"lr": 0.01}}}), "defense.head_reset")
    with pytest.raises(ConfigError, match="defense.head_reset.lr"):
        head_reset.check(Checker({"defense": {"head_reset": {"lr": -1}}}), "defense.head_reset")
    settings = {
        "epochs": 2,
        "clean_fraction": 1.0,
        "batch_size": None,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "head_reset": {"lr": 0.01},
    }
    recipe = Recipe(model="small_cnn", epochs=2, batch_size=32, lr=0.05, crop_padding=1, width=8)
    cell = Defended(
        backdoored=planted["model"],
        spec={},
        clean=planted["train"],
        train=planted["train"],
        poisoned=planted["poisoned"],
        attack=planted["attack"],
        target=0,
        poison_rate=0.1,
        recipe=recipe,
        device=torch.device("cpu"),
        settings=settings,
        seed=0,
        test=planted["test"],
    )
    before = copy.deepcopy(planted["model"].fc)
    outcome = apply_defense("head_reset", head_reset.run, cell)
    assert outcome.model.fc is not planted["model"].fc and outcome.figures["epochs"] == 2
    assert not torch.equal(outcome.model.fc.weight, before.weight)
    assert torch.equal(planted["model"].fc.weight, before.weight)  # the given model is left as it was
    assert outcome.figures["ca"] > 0.5


def test_the_target_confidence_example_measures_through_the_registry(planted):
    from sequela.datasets.splits import Dataset
    from sequela.measures import registry

    module = example("A new sequela measure: a worked example")
    module.check(Checker({"sequela": {"target_confidence": {"n": 50}}}), [])
    with pytest.raises(ConfigError, match="sequela.target_confidence.n"):
        module.check(Checker({"sequela": {"target_confidence": {"n": 0.5}}}), [])
    entry = registry.Measure(
        "target_confidence",
        module.check,
        module.measure_of,
        module.measure_of,
        summary=("target_confidence",),
        downstream=("target_confidence",),
        labels={"target_confidence": "target confidence"},
    )
    ds = Dataset("blobs", ["a", "b", "c", "d"], planted["train"], planted["test"], "blobs")
    cell = types.SimpleNamespace(ds=ds, trigger=planted["attack"], target=0)
    measures = [entry.standalone(cell, {"target_confidence": {"n": 50}})]
    backdoored = registry.measure(measures, planted["model"])["target_confidence"]
    torch.manual_seed(0)
    untrained = models.build("small_cnn", 1, 4, [0.2], [0.25], width=8)
    fresh = registry.measure(measures, untrained)["target_confidence"]
    assert backdoored > 0.8  # the backdoor pulls triggered inputs to its target
    assert abs(fresh - 0.25) < 0.15  # an untrained model spreads them over the 4 classes
