"""What every defense is given and what it gives back.

A defense is a function `run(ctx) -> dict` that changes `ctx.model` in place (or replaces it) and
returns any extra figures it wants in the summary (flagged classes, removed samples, ...). It
calls `ctx.record(epoch, lr)` after each of its training epochs, so every defense yields the same
per-epoch curve (epoch 0, the model before the defense, is recorded by the stage).

Post-training defenses use `ctx.clean` (the defender's clean data). Training-time defenses also
need the attacker's poisoned training set, which `ctx.poisoned_stream()` replays.

`ctx.params` is the defense's block of params.yaml as it applies to the cell's dataset: a block's
`per_dataset` entries replace its values on the datasets they name (`defense_settings`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from sequela.attacks.base import Attack
from sequela.datasets.sizes import DATASETS
from sequela.datasets.splits import Split
from sequela.engine.batches import Augment, BatchStream
from sequela.pipeline.checker import Checker, fail
from sequela.pipeline.records import CurveRecorder
from sequela.training.recipe import Recipe


def defense_settings(settings: dict, name: str, dataset: str | None = None, overrides: dict | None = None) -> dict:
    """Defense `name`'s settings from params.yaml's `defense` section as they apply to `dataset`.

    A block may hold `per_dataset: {<dataset>: {<key>: value}}` where the paper that a defense comes
    from sets a value per dataset (FT-SAM's rho and label smoothing on GTSRB): for that dataset its
    values replace the block's; `overrides` (a benchmark's) replace both. Without a dataset the
    block's own values apply."""
    own = dict(settings.get(name) or {})
    per_dataset = own.pop("per_dataset", None) or {}
    return {**own, **(per_dataset.get(dataset) or {}), **(overrides or {})}


def check_per_dataset(c: Checker, key: str, rules: dict[str, Callable[[str], object]]) -> None:
    """`<key>.per_dataset`, if present: entries named by known datasets, each holding only keys of
    `rules` (the block's own keys), each value passing the same check as the block's."""
    per_dataset = c.get(f"{key}.per_dataset", None)
    if per_dataset is None:
        return
    if not isinstance(per_dataset, dict):
        fail(f"{key}.per_dataset", per_dataset, f"a mapping from dataset names to some of {', '.join(rules)}")
    for dataset, block in per_dataset.items():
        if dataset not in DATASETS:
            fail(f"{key}.per_dataset", dataset, f"entries named by datasets: {', '.join(DATASETS)}")
        if not isinstance(block, dict) or not block:
            fail(f"{key}.per_dataset.{dataset}", block, f"a non-empty mapping of some of {', '.join(rules)}")
        for setting in block:
            if setting not in rules:
                fail(f"{key}.per_dataset.{dataset}", setting, f"settings of {key}: {', '.join(rules)}")
            rules[setting](f"{key}.per_dataset.{dataset}.{setting}")


@dataclass
class DefenseContext:
    model: torch.nn.Module
    clean: Split  # the defender's clean data (uint8, true labels)
    train: Split  # the full training split, before poisoning
    poisoned: torch.Tensor  # indices of poisoned training samples (training-time defenses only)
    attack: Attack  # the attack's trigger (training-time defenses replay the poisoned set)
    target: int
    recipe: Recipe
    epochs: int  # defense.epochs
    params: dict  # defense.<name>
    common: dict  # defense.* shared settings (momentum, weight_decay)
    device: torch.device
    generator: torch.Generator
    recorder: CurveRecorder
    # Training-time defenses retrain from scratch: the architecture's arguments (models.build),
    # the attacker's poison rate (Spectral's removal budget) and the seed of the retraining.
    spec: dict | None = None
    poison_rate: float = 0.0
    seed: int = 0
    batch_size: int | None = None  # defense.batch_size; None: the recipe's batch
    # Rounds of the recipe's epochs the backdoored model trained (training/attacker.py): a training-time
    # defense's retraining trains as many, so that it is compared on the attacker's budget.
    rounds: int = 1

    def __post_init__(self):
        # The defender holds a poisoned training set, not the attacker's training loop: an attack
        # that poisoned fresh rows of every batch (WaNet, InputAware) is replayed on its stored rows.
        if self.attack is not None:
            self.attack = self.attack.as_dataset()

    @classmethod
    def for_defender(
        cls,
        settings: dict,
        name: str,
        seed: int,
        overrides: dict | None = None,
        batch_size: int | None = None,
        dataset: str | None = None,
        **parts,
    ) -> "DefenseContext":
        """A context from params.yaml's `defense` section for defense `name`: its own settings for
        `dataset` (`defense_settings`, plus `overrides`), the shared epochs / momentum / weight decay,
        the defender's batch (`batch_size`, else defense.batch_size, else the recipe's) and a
        generator seeded with `seed`."""
        return cls(
            params=defense_settings(settings, name, dataset, overrides),
            epochs=settings["epochs"],
            common={"momentum": settings["momentum"], "weight_decay": settings["weight_decay"]},
            generator=torch.Generator().manual_seed(seed),
            seed=seed,
            batch_size=batch_size or settings["batch_size"],
            **parts,
        )

    def augment(self) -> Augment:
        return Augment(self.recipe.crop_padding, self.recipe.flip)

    @property
    def defender_batch(self) -> int:
        """The batch the defender fine-tunes with: defense.batch_size, else the recipe's."""
        return self.batch_size or self.recipe.batch_size

    def clean_stream(self, batch_size: int | None = None) -> BatchStream:
        return BatchStream(
            self.clean.x,
            self.clean.y,
            batch_size or self.defender_batch,
            self.device,
            self.generator,
            shuffle=True,
            augment=self.augment(),
        )

    def poisoned_stream(self, batch_size: int | None = None) -> BatchStream:
        return BatchStream(
            self.train.x,
            self.train.y,
            batch_size or self.recipe.batch_size,
            self.device,
            self.generator,
            shuffle=True,
            augment=self.augment(),
            attack=self.attack,
            poisoned=self.poisoned,
            target=self.target,
        )

    def record(self, epoch: int, lr: float) -> None:
        """Evaluate the current model and append a row to the defense's per-epoch curve."""
        self.recorder.record(self.model, epoch, lr)
