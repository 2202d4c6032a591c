"""report: metrics/summary.json, reports/tables/*, reports/figures/*, reports/plots/* from the grid's cells.

Every table prints mean ± sd over grid.seeds; every figure shows the spread; the claims table
judges the paper's claims by paired comparisons over seeds (src/sequela/report/claims.py)."""

from pathlib import Path

import pandas as pd
from opening import open_stage, run_main
from report_cells import ablation_points, curves, external_cells, gather, paradigm_cells, preview

from sequela.ablation import SWEEPS, main_value
from sequela.io import atomic_write_json
from sequela.recipe import Recipe
from sequela.report import ablation, baselines, claims, figures, paradigms, plot_data, sequela_tables, summary, tables

TABLES, FIGURES, PLOTS = Path("reports/tables"), Path("reports/figures"), Path("reports/plots")


def main() -> None:
    params = open_stage(__doc__, device=False).params
    grid = params["grid"]
    n = len(grid["seeds"])
    df = pd.DataFrame(gather(grid))
    points = ablation_points(params, df)
    nested = summary.nest(df)
    reused, reused_curves = paradigm_cells(params)
    if not reused.empty:
        nested.update(summary.nest(reused))
    if not points.empty:
        nested["ablation"] = ablation.nest(points)
    if not (external := external_cells(params)).empty:
        nested.update(summary.nest(external))
        tables.write_rows(tables.spread_rows(external, ["dataset"], "defense", list(external["defense"].unique()),
                                             ("ca", "asr", "mia_loss_auc", "seconds")), TABLES / "external",
                          "Models trained elsewhere (external/<name>/): CA, ASR, membership loss AUC and seconds of "
                          f"the model as given (none) and after each defense (mean ± sd over {n} seeds).")
    atomic_write_json(nested, "metrics/summary.json")

    paper = [f for f in ("ft", "sft") if f in grid["defenses"]]
    rows = tables.spread_rows(df, ["dataset", "attack"], "defense", ["clean", "none", *paper])
    tables.write_rows(rows, TABLES / "standalone",
                      f"Standalone paradigm: CA and ASR (mean ± sd over {n} seeds) of the clean reference (its ASR is "
                      "the trigger's floor without a backdoor), the backdoored model (none) and after FT and SFT.")
    order = baselines.defense_order(df)
    tables.write_rows(tables.spread_rows(df, ["dataset", "attack"], "defense", order, ("ca", "asr", "seconds")),
                      TABLES / "baselines",
                      f"SFT against the baselines: CA, ASR and seconds (mean ± sd over {n} seeds).")
    models = ["clean", "none", *grid["defenses"]]
    tables.write_rows(sequela_tables.sequela_rows(df, models), TABLES / "sequela",
                      f"Backdoor sequela (mean ± sd over {n} seeds): each measure, and its per-seed change after the "
                      "defense (Δ = after - none).")
    if "p_asr" in df:
        retuning = ("ca", "asr", "p_asr", "p_ca")
        tables.write_rows(tables.spread_rows(df, ["dataset", "attack"], "defense", models, retuning),
                          TABLES / "retuning", "The retuning attack (Min et al., 2024): O-ASR (asr, after the defense) "
                          f"and P-ASR (after retuning on 5 poisons), CA before and after (mean ± sd over {n} seeds).")
    if not reused.empty:
        paradigms.write(reused, reused_curves, TABLES, FIGURES, n)
    claim_rows = claims.write_tables(pd.concat([df, reused]), df, params["attack"]["budget"]["min_asr"], TABLES)
    atomic_write_json(summary.headline(nested, claim_rows, grid["datasets"][0], grid["attacks"]),
                      "metrics/headline.json")

    runs_by_dataset = {d: curves(grid, d).assign(dataset=d) for d in grid["datasets"]}
    for dataset, runs in runs_by_dataset.items():
        mine = df[df["dataset"] == dataset]
        floors = mine[mine["defense"] == "clean"].groupby("attack")["asr"].mean().to_dict()
        if paper:
            figures.defense_curves(runs[runs["defense"].isin(paper)], FIGURES / f"curves-{dataset}.png",
                                   f"{dataset}: ASR and CA during FT and SFT (epoch 0 = backdoored; "
                                   f"mean ± sd over {n} seeds)", floors)
        figures.defense_curves(runs, FIGURES / f"curves-baselines-{dataset}.png",
                               f"{dataset}: ASR and CA during every defense (mean ± sd over {n} seeds)", floors,
                               by="defense")
        baselines.ca_vs_asr_figure(mine, FIGURES / f"ca-vs-asr-{dataset}.png",
                                   f"{dataset}: CA against ASR after each defense (mean ± sd, {n} seeds)")
        sequela_tables.sequela_figure(mine, FIGURES / f"sequela-{dataset}.png", f"{dataset}: sequela, change after "
                                      "the defense (after - backdoored, per seed; bars: mean ± sd)")
        reinjection = sequela_tables.reinjection_frame(mine)
        sequela_tables.reinjection_figure(reinjection, FIGURES / f"reinjection-{dataset}.png",
                                          f"{dataset}: ASR while re-injecting the backdoor (epoch 0 = before)")
        preview(dataset, grid["attacks"], grid["seeds"][0], FIGURES / f"triggers-{dataset}.png")

    if not points.empty:
        ablation.write_tables(points, TABLES, n)
        for sweep, mine in points.groupby("sweep"):
            mains = {d: main_value(params, sweep, Recipe.from_params(params, d).batch_size)
                     for d in mine["dataset"].unique()}
            ablation.figure(mine, mains, FIGURES / f"ablation-{sweep}.png",
                            f"Ablation: {SWEEPS[sweep].label} (mean ± sd, {n} seeds; dotted: the main grid's value)")

    runs = pd.concat(runs_by_dataset.values()) if runs_by_dataset else pd.DataFrame()
    plot_data.write_all(runs, df, order, points, PLOTS)
    figures.sft_schedule_figure(df, params["defense"]["sft"], FIGURES / "sft-schedule.png")
    print((TABLES / "standalone.md").read_text())
    print((TABLES / "claims.md").read_text())


if __name__ == "__main__":
    run_main(main)
