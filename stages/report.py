"""report: metrics/summary.json, reports/tables/*, reports/figures/*, reports/plots/* from the grid's cells.

Every table prints mean ± sd over grid.seeds; every figure shows the spread; the claims table
judges the paper's claims by paired comparisons over seeds (src/sequela/report/claims.py)."""

from pathlib import Path

import pandas as pd

from sequela.pipeline.io import atomic_write_json
from sequela.report import ablation, claims, figures, paradigms, plot_data, standalone, summary
from sequela.report.cells import ablation_points, benign, curves, external_cells, gather, paradigm_cells, preview
from sequela.sweeps import SWEEPS, main_value
from sequela.training.recipe import Recipe
from stage import open_stage, run_main

TABLES, FIGURES, PLOTS = Path("reports/tables"), Path("reports/figures"), Path("reports/plots")


def main() -> None:
    params = open_stage(__doc__, device=False).params
    grid = params["grid"]
    n = len(grid["seeds"])
    df = pd.DataFrame(gather(grid))
    points = ablation_points(params, df)
    clean_defended = benign(grid)
    nested = summary.nest(pd.concat([df, clean_defended]))
    reused, reused_curves = paradigm_cells(params)
    if not reused.empty:
        nested.update(summary.nest(reused))
    if not points.empty:
        nested["ablation"] = ablation.nest(points)
    if not (external := external_cells(params)).empty:
        nested.update(summary.nest(external))
        standalone.external_table(external, TABLES, n)
    atomic_write_json(nested, "metrics/summary.json")
    order = standalone.grid_tables(df, clean_defended, grid, TABLES, n)
    if not reused.empty:
        paradigms.write(reused, reused_curves, TABLES, FIGURES, n)
    claim_rows = claims.write_tables(
        pd.concat([df, reused]), df, clean_defended, params["attack"]["budget"]["min_asr"], TABLES
    )
    atomic_write_json(
        summary.headline(nested, claim_rows, grid["datasets"][0], grid["attacks"]), "metrics/headline.json"
    )

    runs_by_dataset = {d: curves(grid, d).assign(dataset=d) for d in grid["datasets"]}
    for dataset, runs in runs_by_dataset.items():
        standalone.dataset_figures(dataset, df[df["dataset"] == dataset], runs, grid, FIGURES, n)
        preview(dataset, grid["attacks"], grid["seeds"][0], FIGURES / f"triggers-{dataset}.png")

    if not points.empty:
        ablation.write_tables(points, TABLES, n)
        for sweep, mine in points.groupby("sweep"):
            mains = {
                d: main_value(params, sweep, Recipe.from_params(params, d).batch_size) for d in mine["dataset"].unique()
            }
            ablation.figure(
                mine,
                mains,
                FIGURES / f"ablation-{sweep}.png",
                f"Ablation: {SWEEPS[sweep].label} (mean ± sd, {n} seeds; dotted: the main grid's value)",
            )

    runs = pd.concat(runs_by_dataset.values()) if runs_by_dataset else pd.DataFrame()
    plot_data.write_all(runs, df, order, points, PLOTS)
    figures.sft_schedule_figure(df, params["defense"]["sft"], FIGURES / "sft-schedule.png")
    print((TABLES / "standalone.md").read_text())
    print((TABLES / "claims.md").read_text())


if __name__ == "__main__":
    run_main(main)
