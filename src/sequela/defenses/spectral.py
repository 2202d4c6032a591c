"""Spectral signatures (Tran et al., 2018): a training-time defense.

Within one label, the poisoned samples share a direction in representation space that the clean
ones lack, so they stand out along the top singular vector of the label's centred features. Per
label, score each sample by its squared projection on that vector, drop the top
`removal_factor x poison_rate` share of the label, and retrain from scratch on what is left.

`poison_rate` is the attacker's share of the whole training set (from the poison artefact), the
upper bound Tran et al. assume the defender knows. In an all-to-one attack every poisoned sample
sits in the target label, where its share is far above that rate, so this budget removes only part
of the poison there: that is the method as published, not a bug.
"""

from __future__ import annotations

import math

import torch

from sequela.defenses.base import DefenseContext
from sequela.defenses.trainset import detection, features_and_labels, retrain_without


def spectral_scores(feats: torch.Tensor) -> torch.Tensor:
    """Squared projection of each centred row on the top right singular vector."""
    centred = feats.double() - feats.double().mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return (centred @ vh[0]).pow(2)


def run(ctx: DefenseContext) -> dict:
    share = ctx.params["removal_factor"] * ctx.poison_rate
    feats, labels = features_and_labels(ctx.model, ctx)
    removed = []
    for label in labels.unique().tolist():
        rows = torch.nonzero(labels == label).flatten()
        k = min(len(rows), math.ceil(share * len(rows)))
        if len(rows) < 2 or k == 0:
            continue
        top = spectral_scores(feats[rows]).topk(k).indices
        removed.append(rows[top])
    removed = torch.cat(removed).sort().values if removed else torch.empty(0, dtype=torch.long)
    figures = detection(removed, ctx)
    retrain_without(ctx, removed, "spectral retrain")
    return figures
