"""Spread over seeds and paired comparisons: the statistics every table and claim uses.

A figure is reported as mean ± sd over its n seeds (sample sd, n - 1 in the denominator). A claim
compares two models on the same seeds: the per-seed difference, its mean and a 95% t-interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def mean_sd(values) -> tuple[float, float, int]:
    """(mean, sample sd, n) of the finite values; sd is nan for n < 2."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan, len(v)


def fmt(mean: float, sd: float, digits: int = 3) -> str:
    """"0.123 ± 0.045"; a dash for no value; no ± part for a single seed."""
    if not np.isfinite(mean):
        return "–"
    if not np.isfinite(sd):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


@dataclass
class Paired:
    """The mean per-seed difference a - b and its 95% t-interval."""

    n: int
    mean: float
    low: float
    high: float


def paired(differences) -> Paired:
    d = np.asarray([x for x in differences if np.isfinite(x)], dtype=np.float64)
    n = len(d)
    if n == 0:
        return Paired(0, math.nan, math.nan, math.nan)
    if n == 1:
        return Paired(1, float(d[0]), math.nan, math.nan)
    from scipy.stats import t  # imported here: only the report needs it

    half = float(t.ppf(0.975, n - 1)) * float(d.std(ddof=1)) / math.sqrt(n)
    return Paired(n, float(d.mean()), float(d.mean()) - half, float(d.mean()) + half)


def verdict(p: Paired, claim_below: float | None = None, claim_above: float | None = None) -> str:
    """"supported" when the whole interval lies on the claimed side of the bound, "contradicted"
    when it lies wholly on the other side, "inconclusive" otherwise (or with fewer than 2 pairs).
    Give exactly one bound: the claim is `difference < claim_below` or `difference > claim_above`."""
    if p.n < 2 or not np.isfinite(p.low):
        return "inconclusive"
    if claim_below is not None:
        return "supported" if p.high < claim_below else "contradicted" if p.low > claim_below else "inconclusive"
    return "supported" if p.low > claim_above else "contradicted" if p.high < claim_above else "inconclusive"
