"""Spectral signatures (Tran et al., 2018): a training-time defense.

Within one label, the poisoned samples share a direction in representation space that the clean
ones lack, so they stand out along the top singular vector of the label's centred features. Per
label, score each sample by its squared projection on that vector, drop the highest-scoring
min(removal_factor x eps x |label|, |label| / 2) samples (the reference's per-label rule), and
retrain from scratch on what is left.

eps is an upper bound on the poisoned share of a label. Which eps (params.yaml `defense.spectral.budget`):
- `stated` (default): the bound the defender states beforehand, `defense.spectral.eps`. The defender
  knows neither the attack nor its rate; 0.1 is the largest share Tran et al. evaluate.
- `oracle_rate`: the attacker's poison rate, its share of the whole training set (BackdoorBench's
  rule). An oracle: the defender cannot know it. In an all-to-one attack the target label's poisoned
  share is far above that rate, so this removes only part of the poison there.
- `oracle_label`: the true poisoned share of the target label. An oracle too; labelled as such
  wherever it is reported.
"""

from __future__ import annotations

import math

import torch

from sequela.defenses.base import DefenseContext
from sequela.defenses.trainset import detection, features_and_labels, retrain_without
from sequela.pipeline.checker import INF, Checker


def spectral_scores(feats: torch.Tensor) -> torch.Tensor:
    """Squared projection of each centred row on the top right singular vector."""
    centred = feats.double() - feats.double().mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return (centred @ vh[0]).pow(2)


BUDGETS = ("stated", "oracle_rate", "oracle_label")


def bound(budget: str, stated: float, poison_rate: float, n_poisoned: int, n_target_label: int) -> float:
    """eps under the named budget (see the module docstring)."""
    if budget == "stated":
        return stated
    return poison_rate if budget == "oracle_rate" else n_poisoned / max(1, n_target_label)


def removal_count(eps: float, factor: float, label_size: int) -> int:
    """How many samples of a label of `label_size` the reference removes: factor x eps of the label,
    never more than half of it."""
    return min(math.ceil(factor * eps * label_size), label_size // 2)


def check(c: Checker, key: str) -> None:
    c.number(f"{key}.removal_factor", 0.0, INF)
    c.number(f"{key}.eps", 0.0, 1.0, high_open=False)
    c.choice(f"{key}.budget", BUDGETS)


def run(ctx: DefenseContext) -> dict:
    feats, labels = features_and_labels(ctx.model, ctx)
    p = ctx.params
    eps = bound(p["budget"], p["eps"], ctx.poison_rate, len(ctx.poisoned), int((labels == ctx.target).sum()))
    removed = []
    for label in labels.unique().tolist():
        rows = torch.nonzero(labels == label).flatten()
        k = removal_count(eps, p["removal_factor"], len(rows))
        if len(rows) < 2 or k == 0:
            continue
        top = spectral_scores(feats[rows]).topk(k).indices
        removed.append(rows[top])
    removed = torch.cat(removed).sort().values if removed else torch.empty(0, dtype=torch.long)
    figures = {**detection(removed, ctx), "eps": round(eps, 4), "budget": p["budget"], "removed_rows": removed}
    retrain_without(ctx, removed, "spectral retrain")
    return {**figures, "epochs_trained": ctx.recipe.epochs * ctx.rounds}
