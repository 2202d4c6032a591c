"""metrics/summary.json, built from the per-cell files the stages write.

    {paradigm: {dataset: {attack: {model: {figure: {"mean", "sd", "n", "seeds": {"0": v, ...}}}}}}}

Under each attack, "none" is the backdoored model, "clean" the clean reference model (its CA, and
its ASR and sequela measured with that attack's trigger), the rest the defenses. Each figure keeps
every seed's value beside its mean, sd and n, so `dvc metrics diff` shows e.g.
`standalone.digits.blended.sft.asr.mean` and each seed's change. Only the headline figures go in;
every other figure stays in metrics/cells.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from sequela.io import read_json
from sequela.report.stats import mean_sd

KEYS = ("paradigm", "dataset", "attack", "defense")
FIGURES = ("ca", "asr", "ra", "seconds", "epochs", "mia_loss_auc", "mia_loss_auc_seen", "mia_loss_auc_unseen",
           "mia_shadow_auc", "mia_shadow_auc_unseen", "mia_tpr_at_1fpr", "reinject_asr", "pgd_acc",
           "sequela_seconds")


def read_cell(path: Path) -> dict:
    """One cell's figures; a missing file is an error (its stage should have made it)."""
    return read_json(path)


def merge(cell: dict, sequela: dict) -> dict:
    """A model's defense figures plus its sequela figures; the sequela's own cost is `sequela_seconds`."""
    extra = {("sequela_seconds" if k == "seconds" else k): v for k, v in sequela.items() if k not in KEYS}
    return {**cell, **extra}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def nest(df: pd.DataFrame) -> dict:
    """The summary from the report's frame: one row per (paradigm, dataset, attack, defense, seed)."""
    summary: dict = {}
    for key, group in df.groupby(list(KEYS), sort=False):
        node = summary
        for part in key[:-1]:
            node = node.setdefault(part, {})
        figures = node.setdefault(key[-1], {})
        for name in FIGURES:
            if name in group and (entry := spread(group["seed"], group[name])):
                figures[name] = entry
    return summary


def spread(seeds, values) -> dict | None:
    """{"mean", "sd", "n", "seeds": {seed: value}} of one figure over its seeds' finite values; None
    where no seed has one."""
    kept = {str(s): float(v) for s, v in zip(seeds, values) if _number(v)}
    if not kept:
        return None
    mean, sd, n = mean_sd(list(kept.values()))
    return {"mean": round(mean, 4), "sd": round(sd, 4) if math.isfinite(sd) else None, "n": n,
            "seeds": {s: round(v, 4) for s, v in kept.items()}}
