"""report: metrics/summary.json, reports/tables/*, reports/figures/* from the grid's cells."""

import json
from pathlib import Path

import pandas as pd
import torch

import layout
from sequela import data
from sequela.attacks import load_artefact
from sequela.config import load_params, run_stage
from sequela.io import atomic_write_json
from sequela.report import figures, summary, tables
from sequela.schedules import sft_from_params

TABLES, FIGURES = Path("reports/tables"), Path("reports/figures")
PREVIEW_IMAGES = 6


def main() -> None:
    params = load_params()
    grid = params["grid"]
    defenses = ["none", *grid["defenses"]]
    # The clean reference model is the row attack "clean", defense "none": no attack, no defense.
    cells = summary.read_cells([layout.clean_metrics(d) for d in grid["datasets"]]
                               + [layout.cell_metrics(d, a, f) for d in grid["datasets"]
                                  for a in grid["attacks"] for f in defenses])
    atomic_write_json(summary.nest(cells), "metrics/summary.json")

    df = summary.frame(cells)
    tables.write_table(tables.before_after(df, defenses), TABLES / "standalone",
                       "Standalone paradigm: CA and ASR before (none) and after each defense.")

    for dataset in grid["datasets"]:
        curves = pd.concat([
            pd.read_csv(layout.defense_curve(dataset, a, f), sep="\t").assign(attack=a, defense=f)
            for a in grid["attacks"] for f in grid["defenses"]
        ])
        figures.defense_curves(curves, FIGURES / f"curves-{dataset}.png",
                               f"{dataset}: ASR and CA during each defense (epoch 0 = backdoored)")
        preview(dataset, grid["attacks"])

    sft_cells = [c for c in cells if c["defense"] == "sft"]
    if sft_cells:
        cell = sft_cells[0]
        steps = cell["steps_per_epoch"]
        schedule = sft_from_params(params["defense"]["sft"], cell["epochs"], steps)
        figures.schedule_plot(schedule, cell["epochs"] * steps, steps, FIGURES / "sft-schedule.png",
                              f"SFT learning rate ({cell['dataset']}, {steps} steps per epoch)")
    print(json.dumps(summary.nest(cells), indent=1)[:2000])


def preview(dataset: str, attacks: list[str]) -> None:
    ds, _ = data.load_prepared(layout.prepared(dataset))
    # One example per class where possible, so the figure shows the trigger on varied content.
    picks = [int(torch.nonzero(ds.test.y == c)[0]) for c in range(min(PREVIEW_IMAGES, ds.num_classes))
             if bool((ds.test.y == c).any())]
    clean = ds.test.x[picks].float() / 255.0
    triggered = {a: load_artefact(layout.poison(dataset, a))[0].apply(clean) for a in attacks}
    figures.trigger_preview(clean, triggered, FIGURES / f"triggers-{dataset}.png", f"{dataset}: triggers")


if __name__ == "__main__":
    run_stage(main)
