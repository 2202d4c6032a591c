"""One source for every path: each path template of dvc.yaml that names a cell is the path that
sequela.pipeline.layout gives for the same cell, so the stages write where DVC looks."""

import inspect
import itertools
import re
from pathlib import Path

import yaml

from sequela.pipeline import layout

ROOT = Path(__file__).resolve().parents[1]
ITEM = {
    "dataset": "digits",
    "seed": 3,
    "attack": "blended",
    "point": "epochs-20",
    "upstream": "digits",
    "downstream": "digits-mirror",
    "pretrain": "mnist",
    "cell": "elsewhere",
}
CANDIDATES = {  # the values a layout function's parameters take for that cell
    "dataset": [ITEM["dataset"], ITEM["pretrain"]],
    "seed": [ITEM["seed"]],
    "attack": [ITEM["attack"], "badencoder"],
    "point": [ITEM["point"]],
    "pair_": [layout.pair(ITEM["upstream"], ITEM["downstream"]), layout.pair(ITEM["pretrain"], ITEM["downstream"])],
    "name": [ITEM["cell"]],
    "defense": ["none", "ft"],
    "rounds": [1],
}


def layout_paths() -> set[str]:
    """Every path a layout function gives for the cell's values."""
    paths = set()
    for _, fn in inspect.getmembers(layout, inspect.isfunction):
        params = [p for p in inspect.signature(fn).parameters.values() if p.default is inspect.Parameter.empty]
        if fn.__module__ != layout.__name__ or not all(p.name in CANDIDATES for p in params):
            continue
        for values in itertools.product(*(CANDIDATES[p.name] for p in params)):
            try:
                out = fn(*values)
            except OSError:  # reads a finished cell (backdoored_rounds)
                continue
            if isinstance(out, Path):
                paths.add(out.as_posix())
    return paths


def templates() -> list[tuple[str, str]]:
    """(stage, path) for every dep and out of dvc.yaml that names a cell (`${item.*}`)."""
    found = []
    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        for entry in [*stage.get("deps", []), *stage.get("outs", [])]:
            path = entry if isinstance(entry, str) else next(iter(entry))
            if "${item." in path:
                found.append((name, path))
    return found


def render(path: str) -> str:
    return re.sub(r"\$\{item\.(\w+)\}", lambda m: str(ITEM[m.group(1)]), path)


def test_every_cell_path_of_dvc_yaml_is_the_one_layout_gives():
    paths = layout_paths()
    templated = templates()
    assert len(templated) > 40  # every seeded stage's deps and outs
    missing = [f"{stage}: {path}" for stage, path in templated if render(path) not in paths]
    assert missing == []


def test_a_path_that_drifts_from_layout_is_caught(monkeypatch):
    original = layout.defense_metrics
    monkeypatch.setattr(layout, "defense_metrics", lambda d, a, s: original(d, a, s).with_name("defended.json"))
    paths = layout_paths()
    assert any(render(path) not in paths for _, path in templates())
