"""ROC summaries of a two-sample score: AUC and TPR at a low FPR.

Written here instead of importing scikit-learn's `roc_auc_score` / `roc_curve` because importing
scikit-learn costs about 2.5 s of CPU per process, which is half of a digits sequela cell's budget;
the test suite checks both against scikit-learn. Convention: a higher score means "member".
"""

from __future__ import annotations

import numpy as np
import torch


def _numpy(scores) -> np.ndarray:
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().to("cpu", torch.float64).numpy()
    return np.asarray(scores, dtype=np.float64).ravel()


def auc(positive, negative) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counted half
    (the Mann-Whitney statistic, which equals the trapezoidal ROC area scikit-learn reports)."""
    pos, neg = _numpy(positive), _numpy(negative)
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("auc needs at least one positive and one negative score")
    scores = np.concatenate([pos, neg])
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    # Average 1-based rank of each distinct value: tied scores share the mean of their ranks.
    mean_rank = np.cumsum(counts) - (counts - 1) / 2.0
    rank_sum = mean_rank[inverse][: len(pos)].sum()
    return float((rank_sum - len(pos) * (len(pos) + 1) / 2.0) / (len(pos) * len(neg)))


def tpr_at_fpr(positive, negative, max_fpr: float = 0.01) -> float:
    """The highest TPR of any threshold whose FPR is at most `max_fpr` (no interpolation, so the
    figure is one a real threshold achieves). With fewer than 1 / max_fpr negatives this is the
    TPR at FPR 0: the share of positives scored above every negative."""
    pos, neg = np.sort(_numpy(positive)), np.sort(_numpy(negative))
    thresholds = np.unique(np.concatenate([pos, neg]))
    # Predict "positive" when score >= threshold; counts of scores >= t via binary search.
    tpr = (len(pos) - np.searchsorted(pos, thresholds, side="left")) / len(pos)
    fpr = (len(neg) - np.searchsorted(neg, thresholds, side="left")) / len(neg)
    ok = fpr <= max_fpr + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0
