"""Anti-backdoor learning (Li et al., 2021): a training-time defense.

Backdoored samples are learned much faster than clean ones. ABL trains a fresh model on the
poisoned set with a flooding loss |CE - gamma| + gamma on the batch mean: once the batch loss drops
below gamma the step turns into gradient ascent, which holds the clean samples near gamma while the
easy poisoned ones still fall far below it. After `isolation_epochs` it isolates the
`isolation_ratio` samples with the lowest loss (each sample's minimum over the ends of the
isolation epochs, see below), trains on the rest with plain cross-entropy for the remaining
epochs of the recipe, and for the further rounds the backdoored model trained, each a warm restart
(the backdoor is learned again from the poison the isolation missed), then
unlearns it by gradient ascent on the isolated samples for `unlearning_epochs` at
`unlearning_lr`. The isolated samples mostly carry the trigger, so ascending their loss breaks the
trigger -> target shortcut rather than clean features.

The premise (trigger learned before the clean task) is the method's and can fail: on tiny, easy
data the clean samples reach near-zero loss first, and a random crop that cuts part of a corner
trigger off slows its learning; the isolation then picks clean samples (see its precision).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sequela import models
from sequela.defenses.base import DefenseContext
from sequela.defenses.trainset import detection, per_sample_loss, poison_flags, without
from sequela.engine.batches import BatchStream
from sequela.engine.device import prepare_model
from sequela.engine.loop import fit
from sequela.engine.optimizers import sgd
from sequela.engine.schedules import constant, cosine
from sequela.pipeline.checker import INF, Checker


def flooding(gamma: float):
    def loss_fn(model, x, y):
        return (F.cross_entropy(model(x), y) - gamma).abs() + gamma

    return loss_fn


def ascent(model, x, y):
    # BatchNorm stays in train mode, as published: part of the unlearning's effect (and of its
    # clean-accuracy cost) comes from re-estimating the statistics on the isolated images.
    return -F.cross_entropy(model(x), y)


def check(c: Checker, key: str) -> None:
    c.integer(f"{key}.isolation_epochs")
    c.integer(f"{key}.unlearning_epochs")
    c.number(f"{key}.gamma", 0.0, INF, low_open=False)
    c.number(f"{key}.isolation_ratio", 0.0, 1.0)
    c.number(f"{key}.unlearning_lr", 0.0, INF)


def run(ctx: DefenseContext) -> dict:
    p, recipe = ctx.params, ctx.recipe
    torch.manual_seed(ctx.seed)  # weight initialisation, as in classifier.train_classifier
    ctx.model = prepare_model(models.build_from_spec(ctx.spec), ctx.device)
    optimizer = sgd(ctx.model, recipe.lr, recipe.momentum, recipe.weight_decay)
    iso_epochs = min(p["isolation_epochs"], recipe.epochs)
    stream = ctx.poisoned_stream()
    # One cosine schedule over the recipe's epochs spans the isolation and the training after it.
    schedule = cosine(recipe.lr, recipe.epochs * len(stream))
    lowest = torch.full((len(ctx.train),), float("inf"))

    def after_isolation_epoch(epoch: int, lr: float) -> None:
        nonlocal lowest
        # Under flooding (and small batches) the backdoor is learned and lost again from epoch to
        # epoch, all poisoned samples together, so one end-of-phase snapshot may catch it lost.
        # A sample's lowest loss at any isolation epoch's end still shows it was learned fast.
        lowest = torch.minimum(lowest, per_sample_loss(ctx.model, ctx))
        ctx.record(epoch, lr)

    fit(
        ctx.model,
        stream,
        optimizer,
        schedule,
        iso_epochs,
        on_epoch=after_isolation_epoch,
        loss_fn=flooding(p["gamma"]),
        desc="abl isolation",
    )

    n_isolated = max(1, math.ceil(p["isolation_ratio"] * len(ctx.train)))
    isolated = lowest.topk(n_isolated, largest=False).indices.sort().values
    figures = detection(isolated, ctx, noun="isolated")

    rest, rest_poisoned = without(ctx, isolated)
    rest_stream = BatchStream(
        rest.x,
        rest.y,
        recipe.batch_size,
        ctx.device,
        ctx.generator,
        augment=ctx.augment(),
        attack=ctx.attack,
        poisoned=rest_poisoned,
        target=ctx.target,
    )
    offset = iso_epochs * len(stream)
    fit(
        ctx.model,
        rest_stream,
        optimizer,
        lambda step: schedule(offset + step),
        recipe.epochs - iso_epochs,
        on_epoch=lambda epoch, lr: ctx.record(iso_epochs + epoch, lr),
        desc="abl training",
    )
    # The backdoored model's further rounds (training/attacker.py), each a warm restart of the recipe's cosine.
    for done in range(recipe.epochs, ctx.rounds * recipe.epochs, recipe.epochs):
        fit(
            ctx.model,
            rest_stream,
            optimizer,
            cosine(recipe.lr, recipe.epochs * len(rest_stream)),
            recipe.epochs,
            on_epoch=lambda epoch, lr, done=done: ctx.record(done + epoch, lr),
            desc="abl training round",
        )
    trained = ctx.rounds * recipe.epochs

    # The isolated rows as the attacker shipped them (trigger + target label where poisoned).
    flags = poison_flags(ctx)[isolated]
    iso = ctx.train.subset(isolated)
    iso_stream = BatchStream(
        iso.x,
        iso.y,
        recipe.batch_size,
        ctx.device,
        ctx.generator,
        augment=ctx.augment(),
        attack=ctx.attack,
        poisoned=torch.nonzero(flags).flatten(),
        target=ctx.target,
    )
    optimizer = sgd(ctx.model, p["unlearning_lr"], recipe.momentum, recipe.weight_decay)  # no momentum carried over
    fit(
        ctx.model,
        iso_stream,
        optimizer,
        constant(p["unlearning_lr"]),
        p["unlearning_epochs"],
        on_epoch=lambda epoch, lr: ctx.record(trained + epoch, lr),
        loss_fn=ascent,
        desc="abl unlearning",
    )
    return {**figures, "epochs_trained": trained + p["unlearning_epochs"]}
