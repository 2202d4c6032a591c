"""Activation clustering (Chen et al., 2018): a training-time defense.

The backdoored model represents a poisoned sample by its trigger, a clean one by its content, so
within the target label the two form separate clusters. Per label: the backdoored model's
penultimate features on the poisoned training set, reduced to `components` dimensions with FastICA,
split by 2-means; the smaller cluster is flagged as poison when it holds at most `size_threshold`
of the label (a clean label splits into two large halves). Flagged samples are removed and the
model is retrained from scratch on the rest (surviving poisoned rows keep trigger and target label).
When no label is flagged the model is returned unchanged, as the reference does: retraining on the
same data would only credit AC with a second training run.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from sequela.defenses.base import DefenseContext
from sequela.defenses.trainset import detection, features_and_labels, retrain_without
from sequela.pipeline.checker import Checker


def smaller_cluster(feats: np.ndarray, components: int, seed: int) -> tuple[np.ndarray, float]:
    """Indices (into `feats`) of the smaller 2-means cluster after ICA, and its share of the rows."""
    # Imported here: scikit-learn takes ~2.5 s to import, and every stage loads the defense registry.
    from sklearn.cluster import KMeans
    from sklearn.decomposition import FastICA
    from sklearn.exceptions import ConvergenceWarning

    components = min(components, feats.shape[1], len(feats) - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # an ICA short of convergence still separates
        reduced = FastICA(n_components=components, random_state=seed, max_iter=500).fit_transform(feats)
    assign = KMeans(n_clusters=2, n_init=10, random_state=seed).fit_predict(reduced)
    small = int(np.bincount(assign, minlength=2).argmin())
    rows = np.flatnonzero(assign == small)
    return rows, len(rows) / len(feats)


def check(c: Checker, key: str) -> None:
    c.integer(f"{key}.components")
    c.number(f"{key}.size_threshold", 0.0, 1.0, high_open=False)


def run(ctx: DefenseContext) -> dict:
    p = ctx.params
    feats, labels = features_and_labels(ctx.model, ctx)
    classes = int(labels.max()) + 1
    removed, shares, flagged_labels = [], [None] * classes, []
    for label in labels.unique().tolist():
        rows = torch.nonzero(labels == label).flatten()
        if len(rows) <= p["components"]:  # too few samples to fit the ICA
            continue
        small, share = smaller_cluster(feats[rows].numpy().astype(np.float64), p["components"], ctx.seed)
        shares[label] = round(share, 3)
        if share <= p["size_threshold"]:
            flagged_labels.append(label)
            removed.append(rows[torch.from_numpy(small)])
    removed = torch.cat(removed).sort().values if removed else torch.empty(0, dtype=torch.long)
    figures = {
        **detection(removed, ctx),
        "flagged_labels": flagged_labels,
        "smaller_cluster_share": shares,
        "removed_rows": removed,
        "epochs_trained": 0,
    }
    if not flagged_labels:
        return figures  # nothing detected: nothing to repair
    retrain_without(ctx, removed, "ac retrain")
    return {**figures, "epochs_trained": ctx.recipe.epochs * ctx.rounds}
