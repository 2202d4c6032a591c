"""report: metrics/summary.json, reports/tables/*, reports/figures/* from the grid's cells.

Every table prints mean ± sd over grid.seeds; every figure shows the spread; the claims table
judges the paper's claims by paired comparisons over seeds (src/sequela/report/claims.py)."""

from pathlib import Path

import pandas as pd
import torch

import layout
from sequela import data
from sequela.attacks import load_artefact
from sequela.config import load_params, run_stage
from sequela.io import atomic_write_json
from sequela.report import baselines, claims, figures, sequela, summary, tables
from sequela.schedules import sft_from_params

TABLES, FIGURES = Path("reports/tables"), Path("reports/figures")
PREVIEW_IMAGES = 6


def gather(grid: dict) -> list[dict]:
    """One row per model and seed: the clean reference, the backdoored model ("none"), each defense."""
    rows = []
    for d in grid["datasets"]:
        for seed in grid["seeds"]:
            clean = summary.read_cell(layout.clean_metrics(d, seed))
            for a in grid["attacks"]:
                key = {"paradigm": layout.PARADIGM, "dataset": d, "attack": a, "seed": seed}
                measured = summary.read_cell(layout.sequela_metrics(d, a, seed))["models"]
                defended = summary.read_cell(layout.defense_metrics(d, a, seed))["defenses"]
                cells = {"clean": {"ca": clean["ca"], "seconds": clean["seconds"]},
                         "none": summary.read_cell(layout.backdoored_metrics(d, a, seed)), **defended}
                for model in ["clean", "none", *grid["defenses"]]:
                    figures_ = {k: v for k, v in cells[model].items() if k not in summary.KEYS and k != "seed"}
                    rows.append({**key, "defense": model, **summary.merge(figures_, measured[model])})
    return rows


def curves(grid: dict, dataset: str) -> pd.DataFrame:
    return pd.concat([
        pd.read_csv(layout.defense_curve(dataset, a, s, f), sep="\t").assign(attack=a, defense=f, seed=s)
        for a in grid["attacks"] for f in grid["defenses"] for s in grid["seeds"]
    ])


def main() -> None:
    params = load_params()
    grid = params["grid"]
    df = pd.DataFrame(gather(grid))
    atomic_write_json(summary.nest(df), "metrics/summary.json")
    n = len(grid["seeds"])

    paper = [f for f in ("ft", "sft") if f in grid["defenses"]]
    rows = tables.spread_rows(df, ["dataset", "attack"], "defense", ["clean", "none", *paper])
    tables.write_rows(rows, TABLES / "standalone",
                      f"Standalone paradigm: CA and ASR (mean ± sd over {n} seeds) of the clean reference (its ASR is "
                      "the trigger's floor without a backdoor), the backdoored model (none) and after FT and SFT.")
    order = baselines.defense_order(df)
    tables.write_rows(tables.spread_rows(df, ["dataset", "attack"], "defense", order, ("ca", "asr", "seconds")),
                      TABLES / "baselines", f"SFT against the baselines: CA, ASR and seconds (mean ± sd over {n} seeds).")
    models = ["clean", "none", *grid["defenses"]]
    tables.write_rows(sequela.sequela_rows(df, models), TABLES / "sequela",
                      f"Backdoor sequela (mean ± sd over {n} seeds): each measure, and its per-seed change after the "
                      "defense (Δ = after - none).")
    # The membership question is about the training data the defense did not revisit (README).
    mia = "mia_loss_auc_unseen" if "mia_loss_auc_unseen" in df and df["mia_loss_auc_unseen"].notna().any() \
        else "mia_loss_auc"
    tables.write_rows(claims.claims_rows(df, mia), TABLES / "claims",
                      "The paper's claims, judged by paired differences over (attack, seed) cells with 95% "
                      "t-intervals.")

    for dataset in grid["datasets"]:
        mine = df[df["dataset"] == dataset]
        runs = curves(grid, dataset)
        if paper:
            figures.defense_curves(runs[runs["defense"].isin(paper)], FIGURES / f"curves-{dataset}.png",
                                   f"{dataset}: ASR and CA during FT and SFT (epoch 0 = backdoored; "
                                   f"mean ± sd over {n} seeds)")
        figures.defense_curves(runs, FIGURES / f"curves-baselines-{dataset}.png",
                               f"{dataset}: ASR and CA during every defense (mean ± sd over {n} seeds)")
        baselines.ca_vs_asr_figure(mine, FIGURES / f"ca-vs-asr-{dataset}.png",
                                   f"{dataset}: CA against ASR after each defense (mean ± sd, {n} seeds)")
        sequela.sequela_figure(mine, FIGURES / f"sequela-{dataset}.png",
                               f"{dataset}: sequela, after the defense - backdoored model (per seed; sd bars)")
        reinjection = pd.DataFrame([{"attack": r["attack"], "model": r["defense"], "seed": r["seed"], "epoch": e,
                                     "asr": asr}
                                    for r in mine.to_dict("records")
                                    for e, asr in enumerate([r["reinject_asr_before"], *r["reinject_curve"]])])
        sequela.reinjection_figure(reinjection, FIGURES / f"reinjection-{dataset}.png",
                                   f"{dataset}: ASR while re-injecting the backdoor (epoch 0 = before)")
        preview(dataset, grid["attacks"], grid["seeds"][0])

    sweep = params["sensitivity"]
    points = pd.DataFrame([{**row, "dataset": d, "attack": a, "seed": s}
                           for d in sweep["datasets"] for a in sweep["attacks"] for s in grid["seeds"]
                           for row in summary.read_cell(layout.sensitivity_metrics(d, a, s))["rows"]])
    if not points.empty:
        rows = tables.spread_rows(points.assign(setting=points["sweep"] + " = " + points["value"].astype(str)),
                                  ["dataset", "attack", "setting"], "defense", ["ft", "sft"])
        tables.write_rows(rows, TABLES / "sensitivity",
                          f"FT and SFT against the defender's batch size and SFT's cycle length (mean ± sd over {n} "
                          "seeds); every other setting at its default.")
        for dataset, mine in points.groupby("dataset"):
            figures.sensitivity_figure(mine, FIGURES / f"sensitivity-{dataset}.png",
                                       f"{dataset}: FT and SFT under other defender settings (mean ± sd, {n} seeds)")

    sft = df[df["defense"] == "sft"]
    if not sft.empty:
        cell = sft.iloc[0]
        steps = int(cell["steps_per_epoch"])
        epochs = int(cell["epochs"])
        schedule = sft_from_params(params["defense"]["sft"], epochs, steps)
        figures.schedule_plot(schedule, epochs * steps, steps, FIGURES / "sft-schedule.png",
                              f"SFT learning rate ({cell['dataset']}, {steps} steps per epoch)")
    print((TABLES / "standalone.md").read_text())
    print((TABLES / "claims.md").read_text())


def preview(dataset: str, attacks: list[str], seed: int) -> None:
    ds, _ = data.load_prepared(layout.prepared(dataset))
    # One example per class where possible, so the figure shows the trigger on varied content.
    picks = [int(torch.nonzero(ds.test.y == c)[0]) for c in range(min(PREVIEW_IMAGES, ds.num_classes))
             if bool((ds.test.y == c).any())]
    clean = ds.test.x[picks].float() / 255.0
    triggered = {a: load_artefact(layout.poison(dataset, a, seed))[0].apply(clean) for a in attacks}
    figures.trigger_preview(clean, triggered, FIGURES / f"triggers-{dataset}.png", f"{dataset}: triggers")


if __name__ == "__main__":
    run_stage(main)
