"""The attack registry: name -> class, and what needs every class (planting by name, loading an
artefact whose class is named in its metadata). Adding an attack: its module, its line below, its
params section (`attack.<name>`, checked by its `check_params`)."""

from __future__ import annotations

from pathlib import Path

import torch

from sequela.attacks.base import Attack, choose_poison_indices, save_artefact
from sequela.attacks.blend import BadNets, Blended
from sequela.attacks.inputaware import InputAware
from sequela.attacks.lf import LowFrequency
from sequela.attacks.sbl import SBL
from sequela.attacks.wanet import WaNet
from sequela.pipeline.checker import Checker
from sequela.pipeline.config import smallest_side
from sequela.pipeline.errors import ConfigError
from sequela.pipeline.io import load_tensors, read_json

ATTACKS: dict[str, type[Attack]] = {cls.name: cls for cls in (BadNets, Blended, LowFrequency, WaNet, InputAware, SBL)}


def check_attack(c: Checker, name: str) -> None:
    """A command-line attack name, and its params section against the grid's smallest image."""
    if name not in ATTACKS:
        raise ConfigError(f"--attack {name} is not allowed; allowed: one of {', '.join(ATTACKS)}")
    ATTACKS[name].check_params(c, f"attack.{name}", *smallest_side(c))


def plant(
    name: str, settings: dict, train_x, train_y, target: int, rate: float, seed: int, device, surrogate_loader=None
):
    """The attacker's choice of poisoned rows and its trigger, from one generator seeded with `seed`:
    (attack, poisoned indices). Attacks built against a trained model (LF) call
    `surrogate_loader()` for the attacker's own clean model (attacker.surrogate: never the
    defender's clean reference); attacks that train something (InputAware's generators) do it on
    `device`."""
    generator = torch.Generator().manual_seed(seed)
    indices = choose_poison_indices(train_y, target, rate, generator)
    cls = ATTACKS[name]
    context = {"device": device}
    if cls.needs_surrogate:
        context["surrogate"] = surrogate_loader()
    return cls.create(settings, train_x, train_y, target, generator, **context), indices


def load_artefact(path: str | Path, device: torch.device | str = "cpu") -> tuple[Attack, torch.Tensor, dict]:
    """(attack, poisoned indices, metadata) from a folder `save_artefact` wrote."""
    path = Path(path)
    meta = read_json(path / "meta.json")
    tensors = load_tensors(path / "poison.safetensors", device=device)
    indices = tensors.pop("indices")
    trigger = {k.removeprefix("trigger."): v for k, v in tensors.items()}
    return ATTACKS[meta["attack"]](trigger, meta["params"]), indices, meta


__all__ = ["ATTACKS", "Attack", "choose_poison_indices", "load_artefact", "plant", "save_artefact"]
