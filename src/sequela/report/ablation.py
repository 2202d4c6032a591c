"""The ablation sweeps in the report: summary section, one table and one figure per sweep.

`points` has one row per (dataset, attack, sweep, value, defense, seed) with the figures ca, asr,
ra, seconds and `main_grid` (the point is the main grid's own setting, read from its cells).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from sequela.report.stats import fmt, mean_sd, paired
from sequela.report.summary import spread
from sequela.report.tables import LABELS, write_rows
from sequela.sweeps import SWEEPS

FIGURES = ("ca", "asr", "ra", "seconds")
ORDER = ("clean", "none", "ft", "sft", "fst", "pam")
# The rule for "the defense removes the backdoor" at a point, fixed before any sweep was run: every
# seed's ASR after it is at most this (the digits clean model's ASR floor is below 0.1).
REMOVED_ASR = 0.2


def nest(points: pd.DataFrame) -> dict:
    """{dataset: {attack: {sweep: {value: {model: {figure: {"mean", "sd", "n", "seeds"}}}}}}}"""
    out: dict = {}
    for (d, a, sweep, value, model), group in points.groupby(["dataset", "attack", "sweep", "value", "defense"]):
        node = out.setdefault(d, {}).setdefault(a, {}).setdefault(sweep, {}).setdefault(str(value), {})
        node[model] = {name: entry for name in FIGURES if (entry := spread(group["seed"], group[name]))}
    return out


def sweep_rows(points: pd.DataFrame) -> list[dict]:
    """One row per (dataset, attack, value): each model's CA and ASR (mean ± sd), whether each
    defense removed the backdoor by the REMOVED_ASR rule, and, where the sweep bears on both FT
    and SFT, the paired per-seed difference SFT - FT in ASR with its 95% t-interval."""
    rows = []
    attacks = list(dict.fromkeys(points["attack"]))  # the grid's order
    ordered = points.assign(order=points["attack"].map(attacks.index)).sort_values(["dataset", "order", "value"])
    for (d, a, value), group in ordered.groupby(["dataset", "attack", "value"], sort=False):
        row = {"dataset": d, "attack": a, "value": f"{value:g}" + (" (main)" if group["main_grid"].any() else "")}
        for model in ORDER:
            cell = group[group["defense"] == model]
            if cell.empty:
                continue
            for figure in ("ca", "asr"):
                mean, sd, _ = mean_sd(cell[figure].astype(float))
                row[f"{model} {LABELS[figure]}"] = (mean, sd)
            if model not in ("none", "clean"):
                row[f"{model} removes"] = "yes" if bool((cell["asr"] <= REMOVED_ASR).all()) else "no"
        both = group[group["defense"].isin(["ft", "sft"])].pivot(index="seed", columns="defense", values="asr")
        if {"ft", "sft"} <= set(both.columns):
            p = paired((both["sft"] - both["ft"]).dropna())
            row["SFT - FT ASR [95% CI]"] = (
                f"{p.mean:+.3f} [{p.low:+.3f}, {p.high:+.3f}] (n={p.n})"
                if math.isfinite(p.low)
                else fmt(p.mean, math.nan)
            )
        rows.append(row)
    return rows


def write_tables(points: pd.DataFrame, folder: Path, n_seeds: int) -> None:
    for sweep, mine in points.groupby("sweep"):
        spec = SWEEPS[sweep]
        write_rows(
            sweep_rows(mine),
            folder / f"ablation-{sweep}",
            f"Ablation: {spec.label} ({spec.key}); every other setting as in the main grid. CA and ASR, "
            f"mean ± sd over {n_seeds} seeds; removes: every seed's ASR <= {REMOVED_ASR}; (main): the "
            "main grid's own setting.",
        )


def figure(points: pd.DataFrame, main_values: dict[str, float | None], path: Path, title: str) -> None:
    """ASR (solid) and CA (dashed) against the swept value; one panel per model (FT, SFT, and the
    backdoored model and the clean reference where the attacker's setting is swept) and dataset, one
    colour per attack; the line is the mean over seeds and the band its sd. A dotted line marks the
    main grid's value, where it has one."""
    from sequela.report.figures import save, sns

    sweep = points["sweep"].iloc[0]
    long = points.melt(
        id_vars=["dataset", "attack", "defense", "seed", "value"],
        value_vars=["asr", "ca"],
        var_name="figure",
        value_name="fraction",
    )
    long["figure"] = long["figure"].str.upper()
    order = [m for m in ORDER if m in set(long["defense"])]
    grid = sns.relplot(
        data=long,
        kind="line",
        x="value",
        y="fraction",
        hue="attack",
        style="figure",
        col="defense",
        col_order=order,
        row="dataset",
        height=2.8,
        aspect=1.2,
        markers=True,
        dashes={"ASR": "", "CA": (4, 2)},
        errorbar="sd",
        facet_kws={"sharex": True},
    )
    grid.set(ylim=(-0.02, 1.02), xlabel=SWEEPS[sweep].label)
    if SWEEPS[sweep].log_x:
        grid.set(xscale="log")
    ticks = sorted(set(points["value"].astype(float)))
    for (dataset, _), ax in grid.axes_dict.items():
        if main_values[dataset] is not None:  # victim_rounds: the main grid trains by the budget rule
            ax.axvline(main_values[dataset], color="0.5", lw=1, ls=":", zorder=0)
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks], rotation=45 if len(ticks) > 4 else 0)
        ax.minorticks_off()
    grid.set_titles("{row_name}: {col_name}")
    grid.figure.suptitle(title, y=1.03)
    save(grid.figure, path)
