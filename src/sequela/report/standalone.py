"""The standalone grid's tables and figures, with their captions: what the report stage writes from the
grid's rows (one per model and seed) and its per-epoch curves."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sequela.report import baselines, figures, sequela_tables, summary, tables


def external_table(external: pd.DataFrame, out: Path, n: int) -> None:
    tables.write_rows(
        tables.spread_rows(
            external,
            ["dataset"],
            "defense",
            list(external["defense"].unique()),
            ("ca", "asr", "mia_loss_auc", "seconds"),
        ),
        out / "external",
        "Models trained elsewhere (external/<name>/): CA, ASR, membership loss AUC and seconds of "
        f"the model as given (none) and after each defense (mean ± sd over {n} seeds).",
    )


def grid_tables(df: pd.DataFrame, benign: pd.DataFrame, grid: dict, out: Path, n: int) -> list[str]:
    """The standalone, baselines, benign, sequela and retuning tables; returns the defenses in the
    baselines' order. `benign` holds the benign condition's rows (the post-training defenses applied
    to the clean reference)."""
    paper = [f for f in ("ft", "sft") if f in grid["defenses"]]
    rows = tables.spread_rows(df, ["dataset", "attack"], "defense", ["clean", "none", *paper])
    tables.write_rows(
        rows,
        out / "standalone",
        f"Standalone paradigm: CA and ASR (mean ± sd over {n} seeds) of the clean reference (its ASR is "
        "the trigger's floor without a backdoor), the backdoored model (none) and after FT and SFT.",
    )
    order = baselines.defense_order(df)
    tables.write_rows(
        tables.spread_rows(pd.concat([df, benign]), ["dataset", "attack"], "defense", order, ("ca", "asr", "seconds")),
        out / "baselines",
        f"SFT against the baselines: CA, ASR and seconds (mean ± sd over {n} seeds). The rows of attack "
        f"{summary.BENIGN!r} apply each post-training defense to the clean reference (no backdoor, so no ASR).",
    )
    tables.write_rows(
        tables.spread_rows(benign, ["dataset"], "defense", ["none", *order], ("ca", "ca_change", "seconds")),
        out / "benign",
        "The benign condition: each post-training defense applied to the clean reference (trained as the "
        "recipe says, no backdoor), from the same defender's share and settings as on the backdoored "
        f"models. none: the clean model as trained; ΔCA = after - before, per seed (mean ± sd over {n} seeds).",
    )
    models = ["clean", "none", *grid["defenses"]]
    tables.write_rows(
        sequela_tables.sequela_rows(df, models),
        out / "sequela",
        f"Backdoor sequela (mean ± sd over {n} seeds): each measure, and its per-seed change after the "
        "defense (Δ = after - none).",
    )
    if "p_asr" in df:
        retuning = ("ca", "asr", "p_asr", "p_ca")
        tables.write_rows(
            tables.spread_rows(df, ["dataset", "attack"], "defense", models, retuning),
            out / "retuning",
            "The retuning attack (Min et al., 2024): O-ASR (asr, after the defense) "
            f"and P-ASR (after retuning on 5 poisons), CA before and after (mean ± sd over {n} seeds).",
        )
    return order


def dataset_figures(dataset: str, mine: pd.DataFrame, runs: pd.DataFrame, grid: dict, out: Path, n: int) -> None:
    """One dataset's figures: the defenses' curves (FT and SFT, then every defense), CA against ASR,
    the sequela's changes and the re-injection curves. `mine` holds the dataset's rows."""
    paper = [f for f in ("ft", "sft") if f in grid["defenses"]]
    floors = mine[mine["defense"] == "clean"].groupby("attack")["asr"].mean().to_dict()
    if paper:
        figures.defense_curves(
            runs[runs["defense"].isin(paper)],
            out / f"curves-{dataset}.png",
            f"{dataset}: ASR and CA during FT and SFT (epoch 0 = backdoored; mean ± sd over {n} seeds)",
            floors,
        )
    figures.defense_curves(
        runs,
        out / f"curves-baselines-{dataset}.png",
        f"{dataset}: ASR and CA during every defense (mean ± sd over {n} seeds)",
        floors,
        by="defense",
    )
    baselines.ca_vs_asr_figure(
        mine,
        out / f"ca-vs-asr-{dataset}.png",
        f"{dataset}: CA against ASR after each defense (mean ± sd, {n} seeds)",
    )
    sequela_tables.sequela_figure(
        mine,
        out / f"sequela-{dataset}.png",
        f"{dataset}: sequela, change after the defense (after - backdoored, per seed; bars: mean ± sd)",
    )
    reinjection = sequela_tables.reinjection_frame(mine)
    sequela_tables.reinjection_figure(
        reinjection,
        out / f"reinjection-{dataset}.png",
        f"{dataset}: ASR while re-injecting the backdoor (epoch 0 = before)",
    )
