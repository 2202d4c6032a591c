"""What every attack shares: the trigger interface, the choice of poisoned samples, the artefact.

An attack is a small object holding its trigger tensors (a mask and pattern, a perturbation, a
warp field, generator weights). It is built once by the poison stage, saved as safetensors with
the poisoned indices, and re-created from that file wherever triggers are needed, on any device.
Triggers are applied to whole batches of float images in [0, 1] (N, C, H, W), on the device.

Two poisoning schedules, each attack's as its reference code has it (`Attack.schedule`):

- "fixed" (BadNets, Blended, LF): the references poison a dataset once. The stored indices
  (round(rate * N) non-target rows, `choose_poison_indices`) carry the trigger and the target label
  in every epoch, and the rest of the training set stays clean.
- "per_batch" (WaNet, InputAware, SBL): the references control the victim's training and poison
  a fresh share of every mini-batch (`poison_fresh`): its first rows, rate x the batch in
  expectation, get the trigger and the target label, whatever their class, and the next ones get
  the attack's cross rows (WaNet's noise warp, InputAware's cross trigger; SBL has none) under
  their own labels. The batch is a fresh shuffle, so each epoch poisons other rows, and over
  training every row is seen triggered in about a `rate` share of the epochs. The engine
  (batches.BatchStream) applies this schedule to the attacker's training only, at the share of the
  stored indices in the training set (training/sbl.py gives SBL's task 1 that share explicitly).

For a per-batch attack the stored indices are still a seeded draw of the same size, and they serve
whatever needs fixed rows, as the fixed-schedule attacks' do:
- the poisoned training set as the defender holds it (`as_dataset`): the training-time defenses
  (ABL, AC, Spectral) score their detection against these rows and retrain on them (trigger and
  target label on these rows in every epoch), much as BackdoorBench saves a fixed poisoned training
  set from WaNet's and InputAware's per-batch training for its defenses;
- the membership measures leave these rows out of the members, like any attack's; under per-batch
  poisoning no row is clean in every epoch, and the remaining rows are as (un)affected as the
  stored ones, so members are a sample of the same size as for the fixed-schedule attacks;
- the retuning attack takes k of these rows as its poisoned images (only their clean images are
  used: it stamps them itself), and the re-injection measure keeps fixed rows too (`as_dataset`);
- the planting check and every evaluation use `apply` alone and never read them.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import ClassVar

import torch

from sequela.pipeline.checker import Checker
from sequela.pipeline.errors import ConfigError
from sequela.pipeline.io import atomic_write_json, save_tensors


class Attack:
    """Base class. Subclasses define `name`, `create` and `apply`; training-time extras (WaNet's
    noise samples, InputAware's cross-trigger samples) override `poison_batch` (fixed rows) and
    `cross_rows` with `cross_count` (per-batch rows)."""

    name: ClassVar[str]
    # "fixed" or "per_batch" (see the module docstring). A class attribute; `as_dataset` gives an
    # instance that replays the stored rows instead.
    schedule: str = "fixed"
    needs_surrogate: ClassVar[bool] = False  # create() gets context["surrogate"], the attacker's clean model
    sequential: ClassVar[bool] = False  # the victim is trained by sbl.train_sbl, not plain SGD

    def __init__(self, tensors: dict[str, torch.Tensor], params: dict):
        self.tensors = dict(tensors)
        self.params = dict(params)

    @classmethod
    def check_params(cls, c: Checker, key: str, side: int, smallest: str) -> None:
        """Check this attack's section `key` of params.yaml; `side` is the smallest image side of the
        grid's datasets (`smallest`), which every trigger must fit."""
        raise NotImplementedError

    @classmethod
    def create(
        cls,
        params: dict,
        train_x: torch.Tensor,
        train_y: torch.Tensor,
        target: int,
        generator: torch.Generator,
        **context,
    ) -> "Attack":
        raise NotImplementedError

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Triggered copies of the images `x` (float, [0, 1], (N, C, H, W))."""
        raise NotImplementedError

    def poison_batch(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        poisoned: torch.Tensor,
        target: int,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The training batch as the attacker's poisoned dataset holds it: rows flagged in
        `poisoned` carry the trigger and the target label."""
        if not bool(poisoned.any()):
            return x, y
        x = x.clone()
        x[poisoned] = self.apply(x[poisoned])
        y = torch.where(poisoned, torch.full_like(y, target), y)
        return x, y

    def poison_fresh(
        self, x: torch.Tensor, y: torch.Tensor, share: float, target: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-batch schedule on one shuffled batch: its first `share` x N rows (in expectation)
        carry the trigger and the target label, the next `cross_count` rows are the attack's cross
        rows and keep their labels, the rest stay clean.

        The references truncate (int(rate * batch)), which at a small batch poisons well under the
        rate (1 row in 16 at rate 0.1); the count here is rounded stochastically instead, so that
        every batch size poisons the configured share on average (WaNet's paper calls it rho_a)."""
        n = len(x)
        n_bd = min(stochastic_count(share * n, generator), n)
        n_cross = min(self.cross_count(n_bd, share, n, generator), n - n_bd)
        if n_bd + n_cross == 0:
            return x, y
        x, y = x.clone(), y.clone()
        if n_cross:  # from the clean batch: a cross row may take its trigger from any other row
            x[n_bd : n_bd + n_cross] = self.cross_rows(x, n_bd, n_cross, generator)
        x[:n_bd] = self.apply(x[:n_bd])
        y[:n_bd] = target
        return x, y

    def cross_count(self, n_bd: int, share: float, n: int, generator: torch.Generator) -> int:
        """How many rows of an n-row batch with n_bd triggered ones get a cross row (none here)."""
        return 0

    def cross_rows(self, x: torch.Tensor, start: int, count: int, generator: torch.Generator) -> torch.Tensor:
        """Cross-row images for x[start:start + count] (rows of the clean batch `x`)."""
        raise NotImplementedError

    def as_dataset(self) -> "Attack":
        """This attack as the poisoned training set the defender holds: the same trigger on the
        stored rows in every epoch (schedule "fixed"), whatever schedule the attacker trained with."""
        if self.schedule == "fixed":
            return self
        replay = copy.copy(self)
        replay.schedule = "fixed"
        return replay

    def to(self, device: torch.device | str) -> "Attack":
        self.tensors = {k: v.to(device) for k, v in self.tensors.items()}
        return self


def stochastic_count(expected: float, generator: torch.Generator) -> int:
    """floor(expected), plus one with probability equal to its fraction: `expected` on average."""
    whole = int(expected)
    return whole + int(torch.rand(1, generator=generator).item() < expected - whole)


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
