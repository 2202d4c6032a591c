"""report: metrics/summary.json, reports/tables/*, reports/figures/* from the grid's cells."""

from pathlib import Path

import pandas as pd
import torch

import layout
from sequela import data
from sequela.attacks import load_artefact
from sequela.config import load_params, run_stage
from sequela.io import atomic_write_json
from sequela.report import baselines, figures, sequela, summary, tables
from sequela.schedules import sft_from_params

TABLES, FIGURES = Path("reports/tables"), Path("reports/figures")
PREVIEW_IMAGES = 6


def gather(grid: dict) -> list[dict]:
    """Every model of the grid: the clean reference, the backdoored one ("none"), each defense."""
    cells = []
    for d in grid["datasets"]:
        clean = summary.read_cell(layout.clean_metrics(d))
        for a in grid["attacks"]:
            reference = {"paradigm": layout.PARADIGM, "dataset": d, "attack": a, "defense": "clean",
                         "ca": clean["ca"], "seconds": clean["seconds"]}
            cells.append(summary.merge(reference, summary.read_cell(layout.sequela_metrics(d, a, "clean"))))
            for f in ["none", *grid["defenses"]]:
                cells.append(summary.merge(summary.read_cell(layout.cell_metrics(d, a, f)),
                                           summary.read_cell(layout.sequela_metrics(d, a, f))))
    return cells


def main() -> None:
    params = load_params()
    grid = params["grid"]
    cells = gather(grid)
    atomic_write_json(summary.nest(cells), "metrics/summary.json")
    df = summary.frame(cells)

    paper = ["clean", "none", *[f for f in ("ft", "sft") if f in grid["defenses"]]]
    tables.write_table(tables.before_after(df, paper), TABLES / "standalone",
                       "Standalone paradigm: CA and ASR of the clean reference, the backdoored model (none) "
                       "and after FT and SFT.")
    tables.write_table(baselines.baselines_table(df[df["defense"] != "clean"]), TABLES / "baselines",
                       "SFT against the baselines: CA, ASR and seconds per defense.")
    sequela_rows = sequela.sequela_table(df, ["clean", "none", *grid["defenses"]])
    tables.write_long_table(sequela_rows, TABLES / "sequela",
                            "Backdoor sequela: each measure, and its change after the defense (Δ = after - none).")

    for dataset in grid["datasets"]:
        curves = pd.concat([
            pd.read_csv(layout.defense_curve(dataset, a, f), sep="\t").assign(attack=a, defense=f)
            for a in grid["attacks"] for f in grid["defenses"]
        ])
        figures.defense_curves(curves, FIGURES / f"curves-{dataset}.png",
                               f"{dataset}: ASR and CA during each defense (epoch 0 = backdoored)")
        mine = df[df["dataset"] == dataset]
        baselines.ca_vs_asr_figure(mine[mine["defense"] != "clean"], FIGURES / f"ca-vs-asr-{dataset}.png")
        sequela.sequela_figure(sequela_rows[sequela_rows["dataset"] == dataset], FIGURES / f"sequela-{dataset}.png",
                               f"{dataset}: sequela (after the defense - backdoored model)")
        reinjection = pd.DataFrame([{"attack": c["attack"], "model": c["defense"], "epoch": e, "asr": asr}
                                    for c in cells if c["dataset"] == dataset
                                    for e, asr in enumerate([c["reinject_asr_before"], *c["reinject_curve"]])])
        sequela.reinjection_figure(reinjection, FIGURES / f"reinjection-{dataset}.png",
                                   f"{dataset}: ASR while re-injecting the backdoor (epoch 0 = before)")
        preview(dataset, grid["attacks"])

    sft_cells = [c for c in cells if c["defense"] == "sft"]
    if sft_cells:
        cell = sft_cells[0]
        steps = cell["steps_per_epoch"]
        schedule = sft_from_params(params["defense"]["sft"], cell["epochs"], steps)
        figures.schedule_plot(schedule, cell["epochs"] * steps, steps, FIGURES / "sft-schedule.png",
                              f"SFT learning rate ({cell['dataset']}, {steps} steps per epoch)")
    print((TABLES / "standalone.md").read_text())


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
