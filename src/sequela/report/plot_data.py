"""The data behind dvc.yaml's top-level plots: small aggregated TSVs under reports/plots/, kept in git
so that `dvc plots show` draws on a fresh clone and `dvc plots diff` compares commits.

Column names do not depend on the grid (dvc.yaml names them once): each file averages over the
cells it pools, and says so in the plot's title. The per-attack detail stays in reports/figures/.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sequela.pipeline.io import atomic_write_text

PAPER_DEFENSES = ("ft", "sft")


def write_tsv(frame: pd.DataFrame, path: Path) -> None:
    atomic_write_text(frame.to_csv(sep="\t", index=False, float_format="%.4f"), path)


def defense_epochs(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per defense epoch: FT's and SFT's ASR and CA, each the mean over seeds of the mean
    over the grid's datasets and attacks (so every seed weighs the same). `runs` has columns
    dataset, attack, defense, seed, epoch, ca, asr."""
    mine = runs[runs["defense"].isin(PAPER_DEFENSES)]
    per_seed = mine.groupby(["defense", "seed", "epoch"])[["asr", "ca"]].mean()
    means = per_seed.groupby(["defense", "epoch"]).mean().unstack("defense")
    means.columns = [f"{defense}_{figure}" for figure, defense in means.columns]
    wanted = [f"{d}_{f}" for d in PAPER_DEFENSES for f in ("asr", "ca") if f"{d}_{f}" in means.columns]
    return means[wanted].reset_index()


def ca_vs_asr(df: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """One row per (attack, defense) of the defended models: CA and ASR, mean over seeds."""
    cells = df[df["defense"].isin(order)]
    stats = cells.groupby(["dataset", "attack", "defense"], sort=False)[["asr", "ca"]].mean().reset_index()
    stats["defense"] = pd.Categorical(stats["defense"], categories=order, ordered=True)
    return stats.sort_values(["dataset", "defense", "attack"], kind="stable").astype({"defense": str})


def sweep(points: pd.DataFrame) -> pd.DataFrame:
    """One row per value of one sweep: each model's ASR and CA, the mean over seeds of the mean over
    the sweep's datasets and attacks."""
    per_seed = points.groupby(["value", "defense", "seed"])[["asr", "ca"]].mean()
    means = per_seed.groupby(["value", "defense"]).mean().unstack("defense")
    means.columns = [f"{defense}_{figure}" for figure, defense in means.columns]
    order = [f"{d}_{f}" for d in ("none", *PAPER_DEFENSES) for f in ("asr", "ca") if f"{d}_{f}" in means.columns]
    return means[order].reset_index().sort_values("value")


def write_all(runs: pd.DataFrame, df: pd.DataFrame, order: list[str], points: pd.DataFrame, out: Path) -> None:
    """reports/plots/: defense-epochs.tsv, ca-vs-asr.tsv and ablation-<sweep>.tsv per sweep."""
    if not runs.empty:
        write_tsv(defense_epochs(runs), out / "defense-epochs.tsv")
    write_tsv(ca_vs_asr(df, order), out / "ca-vs-asr.tsv")
    if not points.empty:
        for name, mine in points.groupby("sweep"):
            write_tsv(sweep(mine), out / f"ablation-{name}.tsv")
