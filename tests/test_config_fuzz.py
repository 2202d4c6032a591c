"""Fuzzing params.yaml: whatever a user does to the file, validation accepts it or refuses it with
one line that names a key; it never raises anything else. Mutations drop keys and sections, change
types, and draw out-of-range and boundary values, one to three at a time."""

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sequela.pipeline.config import load_params
from sequela.pipeline.errors import ConfigError
from sequela.validate import validate

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def paths(node, prefix=()):
    """Every key path of the file, sections and leaves alike."""
    for key, value in node.items():
        yield prefix + (key,)
        if isinstance(value, dict):
            yield from paths(value, prefix + (key,))


PATHS = sorted(paths(PARAMS))


def value_at(params, path):
    for key in path:
        params = params[key]
    return params


# Boundary and out-of-range values of every type a YAML file can hold.
ODD = st.sampled_from(
    [
        None,
        True,
        False,
        0,
        1,
        -1,
        2,
        3,
        7,
        16,
        17,
        43,
        10**12,
        0.0,
        -0.0,
        0.5,
        1.0,
        1.5,
        -0.1,
        1e-12,
        float("inf"),
        float("-inf"),
        float("nan"),
        "",
        "x",
        "0.1",
        "auto",
        "cuda",
        "cuda:7",
        "cpu",
        [],
        [0],
        [0, 0],
        [-1],
        [1.5],
        ["digits"],
        ["badnets"],
        ["ft"],
        [None],
        {},
        {"a": 1},
        {1: 2},
    ]
)


def near(value):
    """Values near a leaf's own: off by one, scaled, negated, as a string, as a list."""
    if isinstance(value, bool):
        return st.sampled_from([not value, int(value), str(value).lower()])
    if isinstance(value, (int, float)):
        return st.sampled_from([value + 1, value - 1, -value, value * 10, value / 10, 0, str(value), [value]])
    if isinstance(value, list):
        return st.sampled_from([value[:1], value + value[:1], value[::-1], [], [str(v) for v in value]])
    if isinstance(value, str):
        return st.sampled_from([value.upper(), value + "x", value[:-1], [value], 0])
    return ODD


@st.composite
def mutated(draw):
    params = copy.deepcopy(PARAMS)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        try:
            parent = value_at(params, path[:-1])
        except (KeyError, TypeError):
            continue  # an earlier mutation removed or replaced a parent
        if not isinstance(parent, dict) or path[-1] not in parent:
            continue
        kind = draw(st.sampled_from(["drop", "odd", "near", "rename"]))
        if kind == "drop":
            del parent[path[-1]]
        elif kind == "rename":  # a typo: the key under another name
            parent[f"{path[-1]}_"] = parent.pop(path[-1])
        elif kind == "near":
            parent[path[-1]] = draw(near(parent[path[-1]]))
        else:
            parent[path[-1]] = draw(ODD)
    return params


KEYS = {".".join(p) for p in PATHS}
NAMED = re.compile(r"params\.yaml: (\S+) ")


def names_a_key(line: str) -> bool:
    """One line that starts by naming a key of the file, or a key under one (a mutation can turn a
    section into something else, or a renamed `use` make a recipe's own keys the ones missing)."""
    match = NAMED.match(line)
    if "\n" in line or not match:
        return False
    key = match.group(1)
    return (
        any(key == k or key.startswith(k + ".") or k.startswith(key + ".") for k in KEYS)
        or key.rsplit(".", 1)[0] in KEYS
    )  # a renamed or added key: its section is a real one


def check(params):
    """Accepted (with one-line warnings) or refused with one line naming a key; nothing else."""
    try:
        warnings = validate(params)
    except ConfigError as err:
        assert names_a_key(str(err)), str(err)
        return None
    assert all(names_a_key(w) for w in warnings), warnings
    return warnings


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_every_mutation_is_accepted_or_refused_with_one_line_naming_a_key(params):
    check(params)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(":-[]{}#&*!|>'\"%@` \n\tabc01.,")), max_size=60), st.integers(0, 2000))
def test_garbage_written_into_the_file_is_accepted_or_refused_with_one_line(tmp_path_factory, garbage, at):
    text = (ROOT / "params.yaml").read_text()
    path = tmp_path_factory.mktemp("fuzz") / "params.yaml"
    path.write_text(text[:at] + garbage + text[at:])
    try:
        load_params(path)
    except ConfigError as err:
        assert "\n" not in str(err) and "params.yaml" in str(err), str(err)


# A few accepted mutations also run the real stages that read them, as subprocesses: no traceback.
@settings(max_examples=2, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(mutated())
def test_accepted_mutations_run_real_stages_without_a_traceback(tmp_path_factory, params):
    assume(check(params) is not None)
    assume(params.get("grid", {}).get("datasets") == ["digits"])  # the one dataset that needs no download
    work = tmp_path_factory.mktemp("accepted")
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", TWO_STAGES, str(ROOT / "stages")],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert (work / "data/standalone/digits/seed0/backdoored/badnets/poison/poison.safetensors").is_file()


# prepare, then poison, in one interpreter (each as its own `__main__`): half the start-up cost.
TWO_STAGES = """
import runpy, sys
stages = sys.argv[1]
sys.path.insert(0, stages)
for argv in (["prepare.py", "--dataset", "digits"],
             ["poison.py", "--dataset", "digits", "--attack", "badnets", "--seed", "0"]):
    sys.argv = [f"{stages}/{argv[0]}", *argv[1:]]
    runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize(
    "key, value",
    [
        ("defense.epochs", 1),
        ("attack.badnets.size", 16),
        ("attack.target", 9),
        ("device", "cpu"),
        ("attack.blended.alpha", 1.0),
        ("data.holdout_fraction", 0.45),
        ("grid.seeds", [7]),
        ("attack.wanet.k", 16),
        ("defense.clean_fraction", 0.05),
    ],
)
def test_boundary_values_are_accepted(key, value):
    params = copy.deepcopy(PARAMS)
    *parents, last = key.split(".")
    value_at(params, parents)[last] = value
    assert check(params) == []
