"""The sequela table and figures: how each defense changed a model's exposure to other attacks.

Sequela = value after the defense - value of the backdoored model ("none"), taken per seed (both
come from the same seed's backdoored model) and then summarised as mean ± sd over seeds.
Re-injection is also compared with the clean reference model of the same seed: is a defended model
easier to re-backdoor than a model that never had a backdoor?
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns

from sequela.measures import registry
from sequela.report.figures import clipped_sd, named, save
from sequela.report.stats import mean_sd

MEASURES = registry.labels()  # frame column -> label


def deltas(df: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Per (dataset, attack, seed, model): every measure minus the `reference` model's, same seed."""
    keys = ["dataset", "attack", "seed"]
    measures = [m for m in MEASURES if m in df]
    ref = df[df["defense"] == reference].set_index(keys)[measures]
    out = df.set_index(keys)[["defense", *measures]].copy()
    out[measures] = out[measures] - ref.reindex(out.index)[measures].to_numpy()
    return out.reset_index()


def sequela_rows(df: pd.DataFrame, models: list[str]) -> list[dict]:
    """Rows (dataset, attack, model): each measure and its change from "none" (mean ± sd over
    seeds); re-injection also as the change from the clean reference."""
    df = df[df["defense"].isin(models)]
    from_none, from_clean = deltas(df, "none"), deltas(df, "clean")
    rows = []
    for (dataset, attack), cell in df.groupby(["dataset", "attack"], sort=False):
        for model in models:
            mine = cell[cell["defense"] == model]
            if mine.empty:
                continue
            row = {"dataset": dataset, "attack": attack, "model": model}
            pick = lambda frame, d=dataset, a=attack, m=model: frame[
                (frame["dataset"] == d) & (frame["attack"] == a) & (frame["defense"] == m)
            ]
            for key, label in MEASURES.items():
                if key not in mine or mine[key].isna().all():
                    continue
                row[label] = mean_sd(mine[key])[:2]
                if model != "none":
                    row[f"Δ {label}"] = mean_sd(pick(from_none)[key])[:2]
            for key in ("reinject_asr", "p_asr"):
                if model != "clean" and key in mine and mine[key].notna().any():
                    row[f"{MEASURES[key]} - clean"] = mean_sd(pick(from_clean)[key])[:2]
            rows.append(row)
    return rows


def sequela_figure(df: pd.DataFrame, path: Path, title: str) -> None:
    """One panel per measure: the per-seed change after each defense (bar = mean over seeds and
    attacks, error bar = sd), one bar per attack."""
    changes = deltas(df, "none")
    changes = changes[~changes["defense"].isin(["none", "clean"])]
    measures = [m for m in MEASURES if m in changes and changes[m].notna().any()]
    long = changes.melt(
        id_vars=["attack", "defense", "seed"], value_vars=measures, var_name="measure", value_name="change"
    )
    long["measure"] = long["measure"].map(MEASURES)
    long["defense"], long["attack"] = named(long["defense"]), named(long["attack"])
    grid = sns.catplot(
        data=long,
        kind="bar",
        x="defense",
        y="change",
        hue="attack",
        col="measure",
        col_wrap=3,
        height=2.8,
        aspect=1.3,
        sharey=False,
        errorbar="sd",
    )
    grid.set_titles("{col_name}")
    # The sign convention, on every panel: above zero, the defended model has more of the measure.
    grid.set_ylabels("after − backdoored")
    for ax in grid.axes.flat:
        ax.axhline(0, color="0.3", lw=0.8)
        ax.tick_params(axis="x", rotation=45)
    grid.figure.suptitle(title, y=1.03)
    save(grid.figure, path)


def reinjection_figure(curves: pd.DataFrame, path: Path, title: str) -> None:
    """ASR during the re-injection fine-tune (mean over draws), one panel per attack, one line per
    model: mean over seeds, band = sd. `curves` has columns attack, model, seed, epoch, asr."""
    curves = curves.assign(model=named(curves["model"]), attack=named(curves["attack"]))
    grid = sns.relplot(
        data=curves,
        kind="line",
        x="epoch",
        y="asr",
        hue="model",
        col="attack",
        col_wrap=min(3, curves["attack"].nunique()),
        height=2.8,
        aspect=1.2,
        marker="o",
        errorbar=clipped_sd,
    )
    grid.set(ylim=(-0.02, 1.02), ylabel="ASR")
    grid.figure.suptitle(title, y=1.03)
    save(grid.figure, path)


def reinjection_frame(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (attack, model, seed, re-injection epoch) from the cells' curves; epoch 0 is before."""
    return pd.DataFrame(
        [
            {"attack": r["attack"], "model": r["defense"], "seed": r["seed"], "epoch": e, "asr": asr}
            for r in df.to_dict("records")
            for e, asr in enumerate([r["reinject_asr_before"], *r["reinject_curve"]])
        ]
    )
