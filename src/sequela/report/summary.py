"""metrics/summary.json, built from the per-cell files the stages write.

    {paradigm: {dataset: {attack: {model: {figure: {"mean", "sd", "n", "seeds": {"0": v, ...}}}}}}}

Under each attack, "none" is the backdoored model, "clean" the clean reference model (its CA, and
its ASR and sequela measured with that attack's trigger), the rest the defenses. Under the attack
key "benign" (the benign condition), "none" is the clean reference and each defense was applied to
it: CA, seconds and `ca_change` (after - before). Each figure keeps
every seed's value beside its mean, sd and n, so `dvc metrics diff` shows e.g.
`standalone.digits.blended.sft.asr.mean` and each seed's change. Only the headline figures go in;
every other figure stays in metrics/cells.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from sequela.measures import registry
from sequela.pipeline.io import read_json
from sequela.report.stats import mean_sd

KEYS = ("paradigm", "dataset", "attack", "defense")
FIGURES = ("ca", "asr", "ra", "seconds", "epochs", *registry.summary_figures(), "sequela_seconds", "ca_change")
# The attack key of the benign condition: the clean reference ("none") and each post-training defense
# applied to it; `ca_change` is CA after - before, per seed.
BENIGN = "benign"


def read_cell(path: Path) -> dict:
    """One cell's figures; a missing file is an error (its stage should have made it)."""
    return read_json(path)


def reference(clean_cell: dict, rounds: int) -> dict:
    """The clean reference's figures after `rounds` rounds of the recipe's epochs (the clean stage
    keeps one per round): the reference of a backdoored model that trained as many."""
    row = next(r for r in clean_cell["by_rounds"] if r["rounds"] == rounds)
    return {k: row[k] for k in ("ca", "seconds", "epochs")}


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
    return {
        "mean": round(mean, 4),
        "sd": round(sd, 4) if math.isfinite(sd) else None,
        "n": n,
        "seeds": {s: round(v, 4) for s, v in kept.items()},
    }


def headline(nested: dict, claim_rows: list[dict], dataset: str, attacks: list[str]) -> dict:
    """The paper's table for `dataset` (standalone): CA and ASR of the backdoored model, FT and SFT
    per attack, as means over seeds, and each claim's pooled mean difference. This is the file DVC
    shows (`dvc exp show`, `dvc metrics diff`): at most 5 attacks x 3 models x 2 + 9 claims numbers.
    The full summary stays in metrics/summary.json."""
    cells = nested.get("standalone", {}).get(dataset, {})
    table = {
        attack: {
            model: {figure: cells[attack][model][figure]["mean"] for figure in ("ca", "asr")}
            for model in ("none", "ft", "sft")
            if model in cells.get(attack, {})
        }
        for attack in attacks
        if attack in cells
    }
    short = {
        "SFT leaves a lower ASR than FT": "sft_minus_ft_asr",
        "Membership risk falls after SFT": "sft_minus_none_mia",
        "Membership risk falls after FT": "ft_minus_none_mia",
        "After SFT the model is easier to re-backdoor than the clean model": "sft_minus_clean_reinject",
        "After FT the model is easier to re-backdoor than the clean model": "ft_minus_clean_reinject",
        "After SFT the model relearns the backdoor faster than the clean model (P-ASR)": "sft_minus_clean_p_asr",
        "After FT the model relearns the backdoor faster than the clean model (P-ASR)": "ft_minus_clean_p_asr",
    }
    claims = {}
    for row in claim_rows:
        if row["paradigm"] == "standalone" and row["dataset"] == dataset and row["scope"].startswith("all attacks"):
            key = short.get(
                row["claim"],
                "sft_minus_none_ca"
                if row["claim"].startswith("SFT keeps")
                else "ft_minus_clean_asr"
                if row["claim"].startswith("FT leaves the backdoor")
                else None,
            )
            if key is not None and _number(row["mean diff"]):
                claims[key] = row["mean diff"]
    return {"dataset": dataset, "models": table, "claims": claims}
