"""Spectral signatures (Tran et al., 2018): a training-time defense.

Within one label, the poisoned samples share a direction in representation space that the clean
ones lack, so they stand out along the top singular vector of the label's centred features. Per
label, score each sample by its squared projection on that vector, drop the top
`removal_factor x eps` share of the label, and retrain from scratch on what is left.

What eps is, is a convention (params.yaml `defense.spectral.budget`):
- `backdoorbench`: the attacker's poison rate, its share of the whole training set (BackdoorBench's
  rule). In an all-to-one attack every poisoned sample sits in the target label, where its share
  is far above that rate, so this budget removes only part of the poison there.
- `tran`: the poisoned share of the target label, the upper bound Tran et al. assume the defender
  knows. It covers the whole poison, and removes that same share of every clean label too.
"""

from __future__ import annotations

import math

import torch

from sequela.checker import INF, Checker
from sequela.defenses.base import DefenseContext
from sequela.defenses.trainset import detection, features_and_labels, retrain_without


def spectral_scores(feats: torch.Tensor) -> torch.Tensor:
    """Squared projection of each centred row on the top right singular vector."""
    centred = feats.double() - feats.double().mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return (centred @ vh[0]).pow(2)


def removal_share(budget: str, factor: float, poison_rate: float, n_poisoned: int, n_target_label: int) -> float:
    """The share of each label to remove under the named convention (see the module docstring)."""
    eps = poison_rate if budget == "backdoorbench" else n_poisoned / max(1, n_target_label)
    return min(1.0, factor * eps)



def check(c: Checker, key: str) -> None:
    c.number(f"{key}.removal_factor", 0.0, INF)
    c.choice(f"{key}.budget", ("backdoorbench", "tran"))


def run(ctx: DefenseContext) -> dict:
    feats, labels = features_and_labels(ctx.model, ctx)
    share = removal_share(ctx.params["budget"], ctx.params["removal_factor"], ctx.poison_rate,
                          len(ctx.poisoned), int((labels == ctx.target).sum()))
    removed = []
    for label in labels.unique().tolist():
        rows = torch.nonzero(labels == label).flatten()
        k = min(len(rows), math.ceil(share * len(rows)))
        if len(rows) < 2 or k == 0:
            continue
        top = spectral_scores(feats[rows]).topk(k).indices
        removed.append(rows[top])
    removed = torch.cat(removed).sort().values if removed else torch.empty(0, dtype=torch.long)
    figures = {**detection(removed, ctx), "removed_share": round(share, 4), "removed_rows": removed}
    retrain_without(ctx, removed, "spectral retrain")
    return {**figures, "epochs_trained": ctx.recipe.epochs}
