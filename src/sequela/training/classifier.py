"""Training a classifier from scratch with a dataset's recipe, poisoned or not.

The backdoored model (train stage), the clean reference model (clean stage), the membership
attacker's shadow model and the training-time defenses' retraining all come through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from sequela import models
from sequela.datasets.splits import Split
from sequela.engine.batches import Augment, BatchStream
from sequela.engine.device import prepare_model
from sequela.engine.loop import fit
from sequela.engine.optimizers import sgd
from sequela.engine.schedules import cosine
from sequela.pipeline.records import CurveRecorder
from sequela.training.recipe import Recipe


@dataclass
class Trained:
    model: models.Classifier
    spec: dict
    curve: list[dict]
    seconds: float  # training wall time, per-epoch evaluation left out
    rounds: int = 1  # rounds of the recipe's epochs trained (see train_classifier's `until`)


def model_spec(recipe: Recipe, image_shape, num_classes: int, mean, std) -> dict:
    return {
        "arch": recipe.model,
        "in_channels": image_shape[0],
        "num_classes": num_classes,
        "mean": list(mean),
        "std": list(std),
        "width": recipe.width,
        "input_shape": list(image_shape),
    }


def train_classifier(
    train: Split,
    spec: dict,
    recipe: Recipe,
    device: torch.device,
    seed: int,
    evaluate: Callable[[torch.nn.Module], dict[str, float]],
    attack=None,
    poisoned: torch.Tensor | None = None,
    target: int = 0,
    desc: str = "train",
    until: Callable[[torch.nn.Module], bool] | None = None,
    max_rounds: int = 1,
    after_round: Callable[[torch.nn.Module, int, float], None] | None = None,
) -> Trained:
    """SGD with momentum and a cosine schedule, the recipe's augmentation; if `attack` is given,
    the samples at `poisoned` carry its trigger and the target label.

    Training runs in rounds of the recipe's epochs, each a new cosine cycle from the recipe's rate
    (a warm restart: weights and momentum carry over); the curve's epochs count on across rounds.
    With `until`, it stops after the first round where `until(model)` holds, or after `max_rounds`:
    the attacker's budget rule (training/attacker.py). Without it, it trains exactly `max_rounds` rounds: a
    model compared with a backdoored one trains the rounds that model trained. `after_round(model,
    rounds, seconds)` runs after each round (the clean reference keeps a snapshot per round)."""
    torch.manual_seed(seed)  # weight initialisation
    model = prepare_model(models.build_from_spec(spec), device)
    generator = torch.Generator().manual_seed(seed)
    stream = BatchStream(
        train.x,
        train.y,
        recipe.batch_size,
        device,
        generator,
        augment=Augment(recipe.crop_padding, recipe.flip),
        attack=attack,
        poisoned=poisoned,
        target=target,
    )
    optimizer = sgd(model, recipe.lr, recipe.momentum, recipe.weight_decay)
    recorder = CurveRecorder(evaluate)
    seconds, rounds = 0.0, 0
    while rounds < max_rounds:
        done = rounds * recipe.epochs
        seconds += fit(
            model,
            stream,
            optimizer,
            cosine(recipe.lr, recipe.epochs * len(stream)),
            recipe.epochs,
            on_epoch=lambda epoch, lr, done=done: recorder.record(model, done + epoch, lr),
            desc=desc if rounds == 0 else f"{desc} round {rounds + 1}",
        )
        rounds += 1
        if after_round is not None:
            after_round(model, rounds, seconds - recorder.eval_seconds)
        if until is not None and until(model):
            break
    return Trained(model, spec, recorder.rows, seconds - recorder.eval_seconds, rounds)
