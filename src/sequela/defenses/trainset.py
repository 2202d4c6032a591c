"""The attacker's poisoned training set as the training-time defenses (ABL, AC, Spectral) see it.

The defender holds the poisoned dataset but not the list of poisoned rows: `ctx.poisoned` is used
here only to replay the attacker's data (trigger + target label on those rows) and, afterwards, to
score the detection (`detection`). Images are stamped batch by batch on the device, never stored.
"""

from __future__ import annotations

import time
from typing import Iterator

import torch
import torch.nn.functional as F

from sequela.defenses.base import DefenseContext
from sequela.engine.device import autocast
from sequela.training.classifier import train_classifier


def poison_flags(ctx: DefenseContext) -> torch.Tensor:
    flags = torch.zeros(len(ctx.train), dtype=torch.bool)
    flags[ctx.poisoned.cpu()] = True
    return flags


def poisoned_batches(ctx: DefenseContext, batch_size: int = 512) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The poisoned training set in its stored order, no augmentation: (images in [0, 1], labels)."""
    flags = poison_flags(ctx).to(ctx.device)
    for start in range(0, len(ctx.train), batch_size):
        end = start + batch_size
        x = ctx.train.x[start:end].to(ctx.device).float().div_(255.0)
        y = ctx.train.y[start:end].to(ctx.device)
        yield ctx.attack.poison_batch(x, y, flags[start:end], ctx.target, ctx.generator)


@torch.no_grad()
def features_and_labels(model: torch.nn.Module, ctx: DefenseContext) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features (`model.features`) of every poisoned-set sample, and its (poisoned) label."""
    was_training = model.training
    model.eval()
    feats, labels = [], []
    for x, y in poisoned_batches(ctx):
        with autocast(ctx.device):
            feats.append(model.features(x).float().cpu())
        labels.append(y.cpu())
    model.train(was_training)
    return torch.cat(feats), torch.cat(labels)


@torch.no_grad()
def per_sample_loss(model: torch.nn.Module, ctx: DefenseContext) -> torch.Tensor:
    """Cross-entropy of every poisoned-set sample under its (poisoned) label, in eval mode."""
    was_training = model.training
    model.eval()
    losses = []
    for x, y in poisoned_batches(ctx):
        with autocast(ctx.device):
            logits = model(x).float()
        losses.append(F.cross_entropy(logits, y, reduction="none").cpu())
    model.train(was_training)
    return torch.cat(losses)


def detection(flagged: torch.Tensor, ctx: DefenseContext, noun: str = "removed") -> dict:
    """How many rows were flagged, and their precision and recall against the truly poisoned ones."""
    truth = poison_flags(ctx)
    hits = int(truth[flagged].sum())
    return {
        noun: int(len(flagged)),
        f"{noun}_poisoned": hits,
        "precision": hits / len(flagged) if len(flagged) else 0.0,
        "recall": hits / int(truth.sum()) if bool(truth.any()) else 0.0,
    }


def without(ctx: DefenseContext, removed: torch.Tensor):
    """The training split minus the `removed` rows, and the positions of the surviving poisoned
    rows in it (they still carry trigger and target label when replayed)."""
    keep = torch.ones(len(ctx.train), dtype=torch.bool)
    keep[removed] = False
    kept = torch.nonzero(keep).flatten()
    return ctx.train.subset(kept), torch.nonzero(poison_flags(ctx)[kept]).flatten()


def retrain_without(ctx: DefenseContext, removed: torch.Tensor, desc: str) -> None:
    """Train a fresh model with the recipe on the poisoned set minus `removed`, as many rounds of its
    epochs as the backdoored model trained (`ctx.rounds`); it becomes ctx.model.

    Its per-epoch evaluations go into the defense's curve, and their time is booked as
    evaluation, so the stage leaves it out of the defense's cost just as for the other defenses."""
    train, poisoned = without(ctx, removed)
    spent = 0.0

    def evaluate(model: torch.nn.Module) -> dict:
        nonlocal spent
        start = time.perf_counter()
        row = ctx.recorder.evaluate(model)
        spent += time.perf_counter() - start
        return row

    run = train_classifier(
        train,
        ctx.spec,
        ctx.recipe,
        ctx.device,
        ctx.seed,
        evaluate,
        attack=ctx.attack,
        poisoned=poisoned,
        target=ctx.target,
        desc=desc,
        max_rounds=ctx.rounds,
    )
    ctx.recorder.rows.extend(run.curve)
    ctx.recorder.eval_seconds += spent
    ctx.model = run.model
