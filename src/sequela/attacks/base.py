"""What every attack shares: the trigger interface, the choice of poisoned samples, the artefact.

An attack is a small object holding its trigger tensors (a mask and pattern, a perturbation, a
warp field, generator weights). It is built once by the poison stage, saved as safetensors with
the poisoned indices, and re-created from that file wherever triggers are needed, on any device.
Triggers are applied to whole batches of float images in [0, 1] (N, C, H, W), on the device.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch

from sequela.checker import Checker
from sequela.errors import ConfigError
from sequela.io import atomic_write_json, save_tensors


class Attack:
    """Base class. Subclasses define `name`, `create` and `apply`; training-time extras (WaNet's
    noise samples, InputAware's cross-trigger samples) override `poison_batch`."""

    name: ClassVar[str]
    needs_clean_model: ClassVar[bool] = False  # create() gets context["clean_model"] when True
    sequential: ClassVar[bool] = False  # the victim is trained by sequential.train_sbl, not plain SGD

    def __init__(self, tensors: dict[str, torch.Tensor], params: dict):
        self.tensors = dict(tensors)
        self.params = dict(params)

    @classmethod
    def check_params(cls, c: Checker, key: str, side: int, smallest: str) -> None:
        """Check this attack's section `key` of params.yaml; `side` is the smallest image side of the
        grid's datasets (`smallest`), which every trigger must fit."""
        raise NotImplementedError

    @classmethod
    def create(cls, params: dict, train_x: torch.Tensor, train_y: torch.Tensor, target: int,
               generator: torch.Generator, **context) -> "Attack":
        raise NotImplementedError

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Triggered copies of the images `x` (float, [0, 1], (N, C, H, W))."""
        raise NotImplementedError

    def poison_batch(self, x: torch.Tensor, y: torch.Tensor, poisoned: torch.Tensor, target: int,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The training batch as the attacker's poisoned dataset holds it: rows flagged in
        `poisoned` carry the trigger and the target label."""
        if not bool(poisoned.any()):
            return x, y
        x = x.clone()
        x[poisoned] = self.apply(x[poisoned])
        y = torch.where(poisoned, torch.full_like(y, target), y)
        return x, y

    def to(self, device: torch.device | str) -> "Attack":
        self.tensors = {k: v.to(device) for k, v in self.tensors.items()}
        return self


def choose_poison_indices(labels: torch.Tensor, target: int, rate: float, generator: torch.Generator) -> torch.Tensor:
    """round(rate * N) training indices, drawn without replacement from non-target classes only
    (all-to-one: a target-class image relabelled to the target teaches nothing)."""
    candidates = torch.nonzero(labels != target).flatten()
    n = round(rate * len(labels))
    if n < 1 or n > len(candidates):
        raise ConfigError(
            f"attack.poison_rate: {rate} asks for {n} poisoned samples; allowed is 1 to {len(candidates)} "
            f"(the non-target training images)"
        )
    pick = torch.randperm(len(candidates), generator=generator)[:n]
    return candidates[pick].sort().values


def save_artefact(attack: Attack, indices: torch.Tensor, meta: dict, out_dir: str | Path) -> None:
    out_dir = Path(out_dir)
    tensors = {f"trigger.{k}": v for k, v in attack.tensors.items()}
    tensors["indices"] = indices
    save_tensors(tensors, out_dir / "poison.safetensors")
    atomic_write_json({**meta, "attack": attack.name, "params": attack.params}, out_dir / "meta.json")
