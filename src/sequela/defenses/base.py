"""What every defense is given and what it gives back.

A defense is a function `run(ctx) -> dict` that changes `ctx.model` in place (or replaces it) and
returns any extra figures it wants in the summary (flagged classes, removed samples, ...). It
calls `ctx.record(epoch, lr)` after each of its training epochs, so every defense yields the same
per-epoch curve (epoch 0, the model before the defense, is recorded by the stage).

Post-training defenses use `ctx.clean` (the defender's clean data). Training-time defenses also
need the attacker's poisoned training set, which `ctx.poisoned_stream()` replays.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sequela.attacks.base import Attack
from sequela.data import Split
from sequela.engine import Augment, BatchStream
from sequela.recipe import Recipe
from sequela.records import CurveRecorder


@dataclass
class DefenseContext:
    model: torch.nn.Module
    clean: Split                    # the defender's clean data (uint8, true labels)
    train: Split                    # the full training split, before poisoning
    poisoned: torch.Tensor          # indices of poisoned training samples (training-time defenses only)
    attack: Attack                  # the attack's trigger (training-time defenses replay the poisoned set)
    target: int
    recipe: Recipe
    epochs: int                     # defense.epochs
    params: dict                    # defense.<name>
    common: dict                    # defense.* shared settings (momentum, weight_decay)
    device: torch.device
    generator: torch.Generator
    recorder: CurveRecorder
    # Training-time defenses retrain from scratch: the architecture's arguments (models.build),
    # the attacker's poison rate (Spectral's removal budget) and the seed of the retraining.
    spec: dict | None = None
    poison_rate: float = 0.0
    seed: int = 0
    batch_size: int | None = None   # defense.batch_size; None: the recipe's batch

    @classmethod
    def for_defender(cls, settings: dict, name: str, seed: int, overrides: dict | None = None,
                     batch_size: int | None = None, **parts) -> "DefenseContext":
        """A context from params.yaml's `defense` section for defense `name`: its own settings
        (plus `overrides`), the shared epochs / momentum / weight decay, the defender's batch
        (`batch_size`, else defense.batch_size, else the recipe's) and a generator seeded with `seed`."""
        return cls(params={**(settings.get(name) or {}), **(overrides or {})}, epochs=settings["epochs"],
                   common={"momentum": settings["momentum"], "weight_decay": settings["weight_decay"]},
                   generator=torch.Generator().manual_seed(seed), seed=seed,
                   batch_size=batch_size or settings["batch_size"], **parts)

    def augment(self) -> Augment:
        return Augment(self.recipe.crop_padding, self.recipe.flip)

    @property
    def defender_batch(self) -> int:
        """The batch the defender fine-tunes with: defense.batch_size, else the recipe's."""
        return self.batch_size or self.recipe.batch_size

    def clean_stream(self, batch_size: int | None = None) -> BatchStream:
        return BatchStream(self.clean.x, self.clean.y, batch_size or self.defender_batch,
                           self.device, self.generator, shuffle=True, augment=self.augment())

    def poisoned_stream(self, batch_size: int | None = None) -> BatchStream:
        return BatchStream(self.train.x, self.train.y, batch_size or self.recipe.batch_size, self.device,
                           self.generator, shuffle=True, augment=self.augment(), attack=self.attack,
                           poisoned=self.poisoned, target=self.target)

    def record(self, epoch: int, lr: float) -> None:
        """Evaluate the current model and append a row to the defense's per-epoch curve."""
        self.recorder.record(self.model, epoch, lr)
