"""The sequela table and figures: how each defense changed a model's exposure to other attacks.

Sequela = value after the defense - value of the backdoored model ("none"). Re-injection is also
compared with the clean reference model: is a defended model easier to re-backdoor than a model
that never had a backdoor?
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns

from sequela.report.figures import save

MEASURES = {  # summary key -> label
    "mia_loss_auc": "MIA loss AUC",
    "mia_shadow_auc": "MIA shadow AUC",
    "mia_tpr_at_1fpr": "MIA TPR@1%FPR",
    "reinject_asr": "re-injection ASR",
    "pgd_acc": "PGD accuracy",
}


def sequela_table(df: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Rows (dataset, attack, model); for each measure its value and its change from "none";
    re-injection also as the change from the clean reference."""
    df = df[df["defense"].isin(models)].set_index(["dataset", "attack", "defense"])
    out = pd.DataFrame(index=df.index)
    for key, label in MEASURES.items():
        before = df[key].xs("none", level="defense")
        out[label] = df[key]
        out[f"Δ {label}"] = df[key] - before.reindex(df.index.droplevel("defense")).to_numpy()
    clean = df["reinject_asr"].xs("clean", level="defense")
    out["re-injection ASR - clean"] = df["reinject_asr"] - clean.reindex(df.index.droplevel("defense")).to_numpy()
    return out.reset_index().rename(columns={"defense": "model"})


def sequela_figure(table: pd.DataFrame, path: Path, title: str) -> None:
    """One panel per measure: the change after each defense, one bar per attack."""
    deltas = [c for c in table.columns if c.startswith("Δ ")]
    long = table[~table["model"].isin(["none", "clean"])].melt(
        id_vars=["dataset", "attack", "model"], value_vars=deltas, var_name="measure", value_name="change")
    grid = sns.catplot(data=long, kind="bar", x="model", y="change", hue="attack", col="measure",
                       col_wrap=3, height=2.8, aspect=1.3, sharey=False)
    grid.set_titles("{col_name}")
    for ax in grid.axes.flat:
        ax.axhline(0, color="0.3", lw=0.8)
        ax.tick_params(axis="x", rotation=45)
    grid.figure.suptitle(title, y=1.03)
    save(grid.figure, path)


def reinjection_figure(curves: pd.DataFrame, path: Path, title: str) -> None:
    """ASR during the re-injection fine-tune, one panel per attack, one line per model.
    `curves` has columns attack, model, epoch, asr."""
    grid = sns.relplot(data=curves, kind="line", x="epoch", y="asr", hue="model", col="attack",
                       col_wrap=min(3, curves["attack"].nunique()), height=2.8, aspect=1.2, marker="o")
    grid.set(ylim=(-0.02, 1.02), ylabel="ASR")
    grid.figure.suptitle(title, y=1.03)
    save(grid.figure, path)
