"""How the SBL attacker trains its victim (Pham et al., ECCV 2024, sequential backdoor learning).

Task 1, the backdoor task: the training split less a seeded `clean_share` of it (clean rows only),
poisoned as the official code's SBL runs poison it (`--is_dat`, "dynamically adding triggers"): a
fresh share of every batch, `attack.poison_rate` of it on average, target class included, carries
the trigger and the target label (SBL.schedule "per_batch", attacks/base.py). It trains with SAM
(rho 0.05) over SGD with momentum, no weight decay, at the recipe's rate held constant (the
official code steps no schedule under SAM), for the recipe's epochs; the attacker's budget rule
(training/attacker.py) adds rounds while its held-out ASR is short. Task 2, continual learning: the
held-back clean rows, plain SGD at `task2_lr_factor` x the rate (the reference's 0.001 after 0.01)
with the recipe's weight decay, for `task2_epochs_factor` x the recipe's epochs (100 after 150),
with the EWC penalty lambda * sum_i F_i (w_i - w1_i)^2 (no factor 1/2) anchoring the weights w1
that ended task 1 (lambda 1, as the reference).

F, the diagonal Fisher information: here the plain mean, over at most FISHER_ROWS seeded task-1
images outside the stored poisoned rows, untriggered and unaugmented, of the squared per-image
gradient of the cross-entropy at the image's true label, BatchNorm in eval mode. The reference
(models/ewc.py, `end_task`) computes the same squared gradient of log p(y | x) at the true label y
for every task-1 image (untriggered: it draws no trigger there; augmented, BatchNorm in eval mode),
weights each by the model's probability p(y | x) of that true label, sums them and divides by
(batches x batch_size); its task-1 loader holds batch_size / 2 images a batch, so its F is about
half a p-weighted mean. On a trained model p(y | x) is near 1 for most images, so the weighting
matters for the few it gets wrong.

Departures: the trigger is BadNets' white square (the reference pastes a random 3x3 patch), and
it is stamped before the augmentation (the reference stamps after it); F as above; the task split is
seeded, not by index order.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from sequela import models
from sequela.datasets.splits import Split
from sequela.engine.batches import Augment, BatchStream
from sequela.engine.device import autocast, prepare_model
from sequela.engine.loop import fit
from sequela.engine.optimizers import sgd
from sequela.engine.schedules import constant
from sequela.pipeline.records import CurveRecorder
from sequela.training.classifier import Trained
from sequela.training.recipe import Recipe
from sequela.training.sharpness import sam_fit

FISHER_ROWS = 1024


def task_split(n: int, poisoned: torch.Tensor, clean_share: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(task-1 rows, task-2 rows): task 2 is a seeded round(clean_share * n) of the clean rows."""
    clean = torch.ones(n, dtype=torch.bool)
    clean[poisoned.cpu()] = False
    candidates = torch.nonzero(clean).flatten()
    order = torch.randperm(len(candidates), generator=torch.Generator().manual_seed(seed + 7919))
    task2 = candidates[order[: round(clean_share * n)]].sort().values
    keep = torch.ones(n, dtype=torch.bool)
    keep[task2] = False
    return torch.nonzero(keep).flatten(), task2


def fisher_diagonal(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean over the images of the squared per-image gradient of the loss (BatchNorm in eval mode)."""
    model.eval()
    # vmap cannot convert a batch to channels_last (the compact CNN's CPU layout); a layout changes
    # the speed of a forward pass, not its value, so the per-image passes run contiguous.
    channels_last = getattr(model, "channels_last", False)
    if channels_last:
        model.channels_last = False
    try:
        return _fisher_diagonal(model, images, labels)
    finally:
        if channels_last:
            model.channels_last = True


def _fisher_diagonal(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def loss(p, x, y):
        out = functional_call(model, (p, buffers), (x[None],))
        return F.cross_entropy(out, y[None])

    total = {k: torch.zeros_like(v) for k, v in params.items()}
    for start in range(0, len(images), 128):
        grads = vmap(grad(loss), in_dims=(None, 0, 0))(params, images[start : start + 128], labels[start : start + 128])
        for k, g in grads.items():
            total[k] += g.pow(2).sum(0)
    return {k: v / len(images) for k, v in total.items()}


def train_sbl(
    train: Split,
    spec: dict,
    recipe: Recipe,
    device: torch.device,
    seed: int,
    settings: dict,
    evaluate: Callable[[torch.nn.Module], dict[str, float]],
    attack,
    poisoned: torch.Tensor,
    target: int,
    desc: str = "sbl",
    until: Callable[[torch.nn.Module], bool] | None = None,
    max_rounds: int = 1,
) -> Trained:
    torch.manual_seed(seed)  # weight initialisation, as train_classifier
    model = prepare_model(models.build_from_spec(spec), device)
    generator = torch.Generator().manual_seed(seed)
    first, second = task_split(len(train), poisoned, float(settings["clean_share"]), seed)
    flags = torch.zeros(len(train), dtype=torch.bool)
    flags[poisoned.cpu()] = True
    augment = Augment(recipe.crop_padding, recipe.flip)
    # Per-batch poisoning (SBL.schedule) at the attacker's rate of the whole training set, not at the
    # stored rows' larger share of task 1.
    task1 = BatchStream(
        train.x[first],
        train.y[first],
        recipe.batch_size,
        device,
        generator,
        augment=augment,
        attack=attack,
        poisoned=torch.nonzero(flags[first]).flatten(),
        target=target,
        share=len(poisoned) / len(train),
    )
    recorder = CurveRecorder(evaluate)
    optimizer = sgd(model, recipe.lr, recipe.momentum, weight_decay=0.0)

    def loss_of(x, y):
        with autocast(device):
            return F.cross_entropy(model(x).float(), y)

    start, rounds, epoch = time.perf_counter(), 0, 0
    while rounds < max_rounds:
        sam_fit(
            model,
            task1,
            optimizer,
            constant(recipe.lr),
            recipe.epochs,
            loss_of,
            float(settings["rho"]),
            adaptive=False,
            second_pass_stats=False,
            first_epoch=epoch + 1,
            desc=f"{desc} task 1",
            on_epoch=lambda e, lr: recorder.record(model, e, lr),
        )
        rounds, epoch = rounds + 1, epoch + recipe.epochs
        if until is None or until(model):
            break

    clean_rows = first[~flags[first]]
    pick = clean_rows[torch.randperm(len(clean_rows), generator=torch.Generator().manual_seed(seed))[:FISHER_ROWS]]
    fisher = fisher_diagonal(model, train.x[pick].to(device).float().div(255.0), train.y[pick].to(device))
    anchor = {k: v.detach().clone() for k, v in model.named_parameters()}
    lam = float(settings["ewc_lambda"])

    def ewc_loss(m, x, y):
        penalty = sum((fisher[k] * (p - anchor[k]).pow(2)).sum() for k, p in m.named_parameters())
        return F.cross_entropy(m(x), y) + lam * penalty

    task2 = BatchStream(train.x[second], train.y[second], recipe.batch_size, device, generator, augment=augment)
    lr2 = recipe.lr * float(settings["task2_lr_factor"])
    epochs2 = max(1, round(recipe.epochs * float(settings["task2_epochs_factor"])))
    fit(
        model,
        task2,
        sgd(model, lr2, recipe.momentum, recipe.weight_decay),
        constant(lr2),
        epochs2,
        on_epoch=lambda e, lr: recorder.record(model, epoch + e, lr),
        loss_fn=ewc_loss,
        desc=f"{desc} task 2",
    )
    seconds = time.perf_counter() - start - recorder.eval_seconds
    return Trained(model, spec, recorder.rows, seconds, rounds)
