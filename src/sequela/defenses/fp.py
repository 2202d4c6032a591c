"""Fine-pruning (Liu et al., 2018): a post-training defense.

Backdoor behaviour tends to live in channels of the last convolutional stage that clean inputs
leave dormant. FP masks those channels (`model.channel_mask`), in order of rising mean activation
on the defender's clean data, as long as clean accuracy holds: it stops before the first count
whose accuracy falls more than `acc_drop` (absolute, in accuracy points) below the unpruned
model's, then fine-tunes the pruned model for `defense.epochs` epochs at a constant `lr`.

The defender has no test set, so the accuracy is measured on a seeded `holdout_fraction` of its
clean data, and the activations on the rest (fine-tuning uses all of it). The mask multiplies the
last stage's channels before the average pool and the linear head, so pruning k channels changes
the logits to fc(features * mask): the features are computed once and every count is evaluated
exactly, channel by channel, at the cost of one matrix product each.
"""

from __future__ import annotations

import torch

from sequela.datasets.splits import Split
from sequela.defenses.base import DefenseContext
from sequela.defenses.finetune import fine_tune
from sequela.engine.device import autocast
from sequela.engine.schedules import constant
from sequela.pipeline.checker import INF, Checker


def split_clean(clean: Split, holdout_fraction: float, seed: int) -> tuple[Split, Split]:
    """(activation part, accuracy holdout) of the defender's clean data, seeded."""
    order = torch.randperm(len(clean), generator=torch.Generator().manual_seed(seed))
    n_hold = max(1, round(holdout_fraction * len(clean)))
    return clean.subset(order[n_hold:]), clean.subset(order[:n_hold])


@torch.no_grad()
def features(model, split: Split, batch_size: int = 512) -> torch.Tensor:
    device = model.channel_mask.device
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(split), batch_size):
        x = split.x[start : start + batch_size].to(device).float().div_(255.0)
        with autocast(device):
            out.append(model.features(x).float())
    model.train(was_training)
    return torch.cat(out)


def activation_order(model, split: Split) -> torch.Tensor:
    """Channels of the last stage, least active on `split` first (pooled features are the
    per-image channel means, so their mean is the channel's mean activation)."""
    return features(model, split).mean(0).argsort()


@torch.no_grad()
def pruning_accuracies(model, holdout: Split, order: torch.Tensor, acc_drop: float) -> list[float]:
    """Holdout accuracy with the first k channels of `order` pruned, for k = 0, 1, ..., up to and
    including the first k whose accuracy falls more than `acc_drop` below k = 0's."""
    feats = features(model, holdout)
    y = holdout.y.to(feats.device)
    mask = model.channel_mask.detach().clone().float()
    accs = []
    for k in range(len(order) + 1):
        if k > 0:
            mask[order[k - 1]] = 0.0
        accs.append((model.fc(feats * mask).argmax(1) == y).float().mean().item())
        if accs[-1] < accs[0] - acc_drop:
            break
    return accs


def prune_count(accs: list[float], acc_drop: float) -> int:
    """The last k before the first one whose accuracy fell more than `acc_drop` (never all channels)."""
    for k, acc in enumerate(accs):
        if acc < accs[0] - acc_drop:
            return k - 1
    return len(accs) - 2


def check(c: Checker, key: str) -> None:
    c.number(f"{key}.acc_drop", 0.0, 1.0, low_open=False)
    c.number(f"{key}.holdout_fraction", 0.0, 1.0)
    c.number(f"{key}.lr", 0.0, INF)


def run(ctx: DefenseContext) -> dict:
    p = ctx.params
    model = ctx.model
    rest, holdout = split_clean(ctx.clean, p["holdout_fraction"], ctx.seed)
    order = activation_order(model, rest)
    accs = pruning_accuracies(model, holdout, order, p["acc_drop"])
    k = prune_count(accs, p["acc_drop"])
    model.channel_mask[order[:k].to(model.channel_mask.device)] = 0.0
    figures = {
        "pruned": k,
        "pruned_fraction": k / len(order),
        "holdout_acc_before": accs[0],
        "holdout_acc_pruned": accs[k],
    }
    fine_tune(ctx, constant(p["lr"]), "fp")
    return figures
