"""Spread over seeds and paired comparisons: the statistics every table and claim uses.

A figure is reported as mean ± sd over its n seeds (sample sd, n - 1 in the denominator). A claim
compares two models on the same seeds: the per-seed difference, its mean, a t-interval (95% unless
a family of claims asks for a wider one) and the two-sided paired t-test of the mean against the
claim's bound. `holm` adjusts a family of such p-values (Holm, 1979) and gives each claim the level
of its interval, so that interval and verdict always agree (src/sequela/report/claims.py).
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
    """ "0.123 ± 0.045"; a dash for no value; no ± part for a single seed."""
    if not np.isfinite(mean):
        return "–"
    if not np.isfinite(sd):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


@dataclass
class Paired:
    """The mean per-seed difference a - b and its t-interval at `level` (0.95 by default)."""

    n: int
    mean: float
    low: float
    high: float
    level: float = 0.95


def _finite(differences) -> np.ndarray:
    return np.asarray([x for x in differences if np.isfinite(x)], dtype=np.float64)


def paired(differences, level: float = 0.95) -> Paired:
    d = _finite(differences)
    n = len(d)
    if n == 0:
        return Paired(0, math.nan, math.nan, math.nan, level)
    if n == 1:
        return Paired(1, float(d[0]), math.nan, math.nan, level)
    from scipy.stats import t  # imported here: only the report needs it

    half = float(t.ppf(1 - (1 - level) / 2, n - 1)) * float(d.std(ddof=1)) / math.sqrt(n)
    return Paired(n, float(d.mean()), float(d.mean()) - half, float(d.mean()) + half, level)


def p_value(differences, bound: float) -> float:
    """Two-sided paired t-test of mean(differences) = bound; nan with fewer than 2 pairs. Its
    rejection at alpha is the (1 - alpha) t-interval of `paired` leaving out the bound."""
    d = _finite(differences)
    n = len(d)
    if n < 2:
        return math.nan
    sd, gap = float(d.std(ddof=1)), float(d.mean()) - bound
    if sd == 0:  # identical differences: no spread, the test is decided by the mean alone
        return 1.0 if gap == 0 else 0.0
    from scipy.stats import t

    return float(2 * t.sf(abs(gap) / (sd / math.sqrt(n)), n - 1))


@dataclass
class HolmStep:
    """One hypothesis of a Holm family: its adjusted p-value, whether it is rejected, and the
    alpha of its interval (the interval to print is the (1 - alpha) t-interval)."""

    p_adjusted: float
    rejected: bool
    alpha: float
    step: int  # 1-based rank of its p-value in the family
    decided: int  # the step whose level `alpha` is: its own when rejected, else where the procedure stopped
    size: int  # m, the number of tested hypotheses in the family


def holm(p_values: list[float], alpha: float = 0.05) -> list[HolmStep | None]:
    """Holm's step-down procedure over the finite p-values (a nan p is no test: None, not counted in m).

    Sorted ascending, p_(k) is tested at alpha / (m - k + 1); the steps reject while p_(k) < that
    level and stop at the first that does not. Adjusted p_(k) = max over j <= k of
    min(1, (m - j + 1) p_(j)), so rejected <=> adjusted p < alpha. A rejected hypothesis gets the
    level of its own step; every hypothesis from the stopping step on gets the stopping step's
    level, under which its interval still holds the bound (its p is no smaller than the stopping
    step's). So the interval leaves out the bound exactly when the hypothesis is rejected."""
    tested = sorted((i for i, p in enumerate(p_values) if np.isfinite(p)), key=lambda i: p_values[i])
    m, out = len(tested), [None] * len(p_values)
    adjusted, stopped = 0.0, None
    for k, i in enumerate(tested, start=1):
        adjusted = max(adjusted, min(1.0, (m - k + 1) * p_values[i]))
        if stopped is None and not p_values[i] < alpha / (m - k + 1):
            stopped = k
        decided = k if stopped is None else stopped
        out[i] = HolmStep(adjusted, stopped is None, alpha / (m - decided + 1), k, decided, m)
    return out


def verdict(p: Paired, claim_below: float | None = None, claim_above: float | None = None) -> str:
    """ "supported" when the whole interval lies on the claimed side of the bound, "contradicted"
    when it lies wholly on the other side, "inconclusive" otherwise (or with fewer than 2 pairs).
    Give exactly one bound: the claim is `difference < claim_below` or `difference > claim_above`."""
    if p.n < 2 or not np.isfinite(p.low):
        return "inconclusive"
    if claim_below is not None:
        return "supported" if p.high < claim_below else "contradicted" if p.low > claim_below else "inconclusive"
    return "supported" if p.low > claim_above else "contradicted" if p.high < claim_above else "inconclusive"


def directional_verdict(
    mean: float, rejected: bool, claim_below: float | None = None, claim_above: float | None = None
) -> str:
    """A two-sided test's verdict: supported when it rejects and the mean lies on the claimed side of
    the bound, contradicted when it rejects on the other side, inconclusive when it does not reject."""
    if not rejected:
        return "inconclusive"
    claimed = mean < claim_below if claim_below is not None else mean > claim_above
    return "supported" if claimed else "contradicted"
