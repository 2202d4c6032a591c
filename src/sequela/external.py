"""Defending a model trained elsewhere: what `sequela defend` and the grid's `external@` cells share.

The model is a self-describing file (models.load_file); the data are image folders or .npz files
(folders.py) in up to five roles: the defender's clean data (required), a clean test set (CA), a
triggered test set with its true labels (ASR and RA on its images not labelled with the target),
and members / non-members of the model's training set (the pipeline's metric membership attacks).
Each defense runs through defenses.apply, the pipeline's own loop, seeded as the pipeline seeds it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from sequela import folders, models
from sequela.datasets.splits import Split
from sequela.defenses.apply import Defended, apply_defense
from sequela.defenses.registry import CLEAN_DATA_ONLY, DEFENSES
from sequela.engine.loop import predict
from sequela.measures.membership import metric_attacks, metric_figures
from sequela.metrics import clean_accuracy
from sequela.pipeline.checker import Checker, fail
from sequela.pipeline.errors import StageError
from sequela.training.recipe import Recipe
from sequela.workers import run_units

ROLES = ("clean", "test", "triggered", "members", "non_members")


@dataclass
class FolderCell(Defended):
    """A Defended whose figures come from folders: CA on `test`, ASR and RA on the triggered
    images not labelled with the target."""

    triggered: Split | None = None

    def evaluate(self, model: torch.nn.Module, split: Split | None) -> dict:
        out = {"ca": clean_accuracy(model, split) if split is not None else None}
        if self.triggered is not None:
            victims = self.triggered.subset(self.triggered.y != self.target)
            pred = predict(model, victims.x)
            out["asr"] = (pred == self.target).float().mean().item()
            out["ra"] = (pred == victims.y.to(pred.device)).float().mean().item()
        return out


def check_request(spec: dict, names: list[str], paths: dict[str, Path | None], target: int | None) -> None:
    """The defenses, the target and the pairs of roles, checked before any data is read."""
    for name in names:
        if name not in CLEAN_DATA_ONLY:
            raise StageError(
                f"defense {name!r} is not allowed; allowed (clean data only): {', '.join(CLEAN_DATA_ONLY)}"
            )
    if paths.get("clean") is None:
        raise StageError("the defender's clean data is required")
    if (paths.get("triggered") is None) != (target is None):
        raise StageError("triggered images and a target go together: ASR needs both")
    if target is not None and not 0 <= target < spec["num_classes"]:
        raise StageError(f"target {target} is out of range; allowed: 0..{spec['num_classes'] - 1}")
    if (paths.get("members") is None) != (paths.get("non_members") is None):
        raise StageError("members and non-members go together: a membership AUC needs both")


def read_roles(spec: dict, paths: dict[str, Path | None], resize: bool) -> tuple[dict[str, Split], list[str]]:
    """Each given role's images at the model's input shape, and the roles that had to be resized."""
    splits, resized = {}, []
    for role in ROLES:
        path = paths.get(role)
        if path is None:
            continue
        # The class count is the model's: a role's data may lack a class (a triggered set without the target).
        split, _ = folders.read_images(path, spec["in_channels"], spec["num_classes"])
        splits[role], was_resized = folders.fit_size(split, spec["input_shape"], resize, str(path))
        if was_resized:
            resized.append(role)
    return splits, resized


@dataclass
class Job:
    """What every unit of one `defend` call reads."""

    cell: FolderCell
    on: dict[str, Split]
    keep: Callable[[str, torch.nn.Module], None]


def membership(on: dict[str, Split], m: torch.nn.Module) -> dict:
    return metric_figures(metric_attacks(m, on["members"], on["non_members"])) if "members" in on else {}


def unit(job: Job, name: str) -> dict:
    """The figures of the model as given ("none") or after defense `name`."""
    cell = job.cell
    if name == "none":
        return {**cell.evaluate(cell.backdoored, cell.test), **membership(job.on, cell.backdoored)}
    outcome = apply_defense(name, DEFENSES[name].run, cell)
    job.keep(name, outcome.model)
    # the defender's data is given whole: the pipeline's clean share does not apply
    figures = {k: v for k, v in outcome.figures.items() if k != "clean_fraction"}
    return {**figures, **membership(job.on, outcome.model)}


def defend(
    model: torch.nn.Module,
    spec: dict,
    splits: dict[str, Split],
    names: list[str],
    settings: dict,
    recipe: Recipe,
    device: torch.device,
    seed: int,
    target: int | None,
    keep: Callable[[str, torch.nn.Module], None],
) -> dict:
    """{model name: figures} for the model as given ("none") and after each defense in `names`;
    `keep(name, model)` receives each defended model. The units run as the defend and sequela
    stages run theirs (workers.run_units: single-threaded on a CPU), so a model and data exported
    from a cell give back that cell's figures."""
    on = {k: v.to(device) for k, v in splits.items()}
    cell = FolderCell(
        backdoored=model,
        spec=spec,
        clean=splits["clean"],
        train=splits["clean"],
        poisoned=torch.empty(0, dtype=torch.long),
        attack=None,
        target=target or 0,
        poison_rate=0.0,
        recipe=recipe,
        device=device,
        settings=settings,
        seed=seed,
        test=on.get("test"),
        triggered=on.get("triggered"),
    )
    units = ["none", *names]
    return dict(zip(units, run_units(partial(unit, Job(cell, on, keep)), units, device)))


def read_spec(path: Path) -> dict:
    """The spec of a model file given from outside, before its weights are read."""
    if path.suffix != ".safetensors":
        raise StageError(f"{path}: not a .safetensors file; convert a PyTorch checkpoint with `sequela convert`")
    return models.read_spec(path)


def load_model(path: Path, device: torch.device) -> tuple[torch.nn.Module, dict]:
    read_spec(path)
    return models.load_file(path, device)


# --- the grid's external@ cells ---------------------------------------------------------------

FOLDER = Path("external")
FOLDER_ROLES = {
    "clean": "clean",
    "test": "test",
    "triggered": "triggered",
    "members": "members",
    "non_members": "non-members",
}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def folder_roles(folder: Path) -> dict[str, Path | None]:
    """external/<name>/'s data folders (or .npz files) by role; None where absent."""
    found = {}
    for role, stem in FOLDER_ROLES.items():
        candidates = [folder / stem, folder / f"{stem}.npz"]
        found[role] = next((p for p in candidates if p.exists()), None)
    return found


def check(c: Checker) -> None:
    """params.yaml `external`: each cell a folder external/<name>/ with its model and clean data,
    a target where it holds triggered images, and the defender's augmentation."""
    cells = c.get("external.cells")
    if (
        not isinstance(cells, list)
        or len(set(map(str, cells))) != len(cells)
        or not all(isinstance(n, str) and NAME.fullmatch(n) for n in cells)
    ):
        fail("external.cells", cells, "a list of distinct folder names under external/ (letters, digits, - and _)")
    targets = c.get("external.targets")
    if not isinstance(targets, dict):
        fail("external.targets", targets, "a mapping from a cell's name to its backdoor's target class")
    for name in cells:
        folder = FOLDER / name
        if not (folder / "model.safetensors").is_file() or folder_roles(folder)["clean"] is None:
            fail(
                "external.cells",
                name,
                f"a folder {folder}/ holding model.safetensors (`sequela convert` makes "
                "one) and clean/ (the defender's data)",
            )
        if folder_roles(folder)["triggered"] is not None and name not in targets:
            fail(f"external.targets.{name}", None, "the target class of its triggered/ images (an integer)")
    for name in targets:
        target = c.get(f"external.targets.{name}")
        if name not in cells or isinstance(target, bool) or not isinstance(target, int) or target < 0:
            fail(f"external.targets.{name}", target, "a class index >= 0, for a name in external.cells")
    c.integer("external.batch_size")
    c.integer("external.crop_padding", low=0)
    c.boolean("external.flip")
    c.boolean("external.resize")
