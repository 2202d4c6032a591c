"""report: metrics/summary.json, reports/tables/*, reports/figures/* from the grid's cells.

Every table prints mean ± sd over grid.seeds; every figure shows the spread; the claims table
judges the paper's claims by paired comparisons over seeds (src/sequela/report/claims.py)."""

from pathlib import Path

import pandas as pd
import torch

import layout
from sequela import data
from sequela.attacks import load_artefact
from sequela.ablation import SWEEPS, main_value, same_value
from sequela.config import Recipe, load_params, run_stage
from sequela.io import atomic_write_json
from sequela.report import ablation, baselines, claims, figures, paradigms, sequela, summary, tables
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
                key = {"paradigm": layout.STANDALONE, "dataset": d, "attack": a, "seed": seed}
                measured = summary.read_cell(layout.sequela_metrics(d, a, seed))["models"]
                defended = summary.read_cell(layout.defense_metrics(d, a, seed))["defenses"]
                cells = {"clean": {"ca": clean["ca"], "seconds": clean["seconds"]},
                         "none": summary.read_cell(layout.backdoored_metrics(d, a, seed)), **defended}
                for model in ["clean", "none", *grid["defenses"]]:
                    figures_ = {k: v for k, v in cells[model].items() if k not in summary.KEYS and k != "seed"}
                    rows.append({**key, "defense": model, **summary.merge(figures_, measured[model])})
    return rows


def paradigm_cells(params: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The transfer and encoder paradigms' rows (one per model and seed) and their FT / SFT curves."""
    rows, runs, seeds = [], [], params["grid"]["seeds"]
    t, e = params["transfer"], params["encoder"]
    cells = [("transfer", layout.pair(u, d), a, s, layout.transfer_metrics(layout.pair(u, d), a, s),
              layout.transfer_curves(layout.pair(u, d), a, s))
             for u in t["upstream"] for d in t["downstream"] for a in t["attacks"] for s in seeds]
    cells += [("encoder", layout.pair(p, d), "badencoder", s, layout.encoder_metrics(layout.pair(p, d), s),
               layout.encoder_curves(layout.pair(p, d), s))
              for p in e["pretrain"] for d in e["downstream"] for s in seeds]
    for paradigm, pair, attack, seed, metrics, curves_dir in cells:
        rows += paradigms.rows_of(paradigm, pair, attack, seed, summary.read_cell(metrics))
        runs.append(paradigms.curve_rows(attack, seed, curves_dir).assign(paradigm=paradigm, dataset=pair))
    return pd.DataFrame(rows), (pd.concat(runs) if runs else pd.DataFrame())


def ablation_points(params: dict, df: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, attack, sweep, value, model, seed) of every sweep with values: the
    computed points from their cells, and the main grid's own point from the main grid's cells
    (where a listed value equals it, its cell names the models to read there)."""
    abl, seeds, rows = params["ablation"], params["grid"]["seeds"], []
    main_rows = df.set_index(["dataset", "attack", "defense", "seed"])

    def from_main(d, a, sweep, value, model, seed):
        f = main_rows.loc[(d, a, model, seed)]
        return {"dataset": d, "attack": a, "sweep": sweep, "value": value, "defense": model, "seed": seed,
                "main_grid": True, **{k: f[k] for k in ablation.FIGURES}}

    for d in abl["datasets"]:
        recipe_batch = Recipe.from_params(params, d).batch_size
        for sweep, spec in SWEEPS.items():
            main = main_value(params, sweep, recipe_batch)
            in_main = [m for m in spec.defenses if m == "none" or m in params["grid"]["defenses"]]
            for a in abl["attacks"]:
                for seed in seeds:
                    if abl[sweep] and not any(same_value(v, main) for v in abl[sweep]):
                        rows += [from_main(d, a, sweep, main, m, seed) for m in in_main]
                    for value in abl[sweep]:
                        cell = summary.read_cell(layout.ablation_metrics(d, a, seed, sweep, str(value)))
                        rows += [from_main(d, a, sweep, value, m, seed) for m in cell["from_main_grid"]]
                        rows += [{"dataset": d, "attack": a, "sweep": sweep, "value": value, "defense": m, "seed": seed,
                                  "main_grid": False, **{k: f[k] for k in ablation.FIGURES}}
                                 for m, f in cell["models"].items()]
    return pd.DataFrame(rows)


def curves(grid: dict, dataset: str) -> pd.DataFrame:
    return pd.concat([
        pd.read_csv(layout.defense_curve(dataset, a, s, f), sep="\t").assign(attack=a, defense=f, seed=s)
        for a in grid["attacks"] for f in grid["defenses"] for s in grid["seeds"]
    ])


def main() -> None:
    params = load_params()
    grid = params["grid"]
    df = pd.DataFrame(gather(grid))
    points = ablation_points(params, df)
    nested = summary.nest(df)
    reused, reused_curves = paradigm_cells(params)
    if not reused.empty:
        nested.update(summary.nest(reused))
    if not points.empty:
        nested["ablation"] = ablation.nest(points)
    atomic_write_json(nested, "metrics/summary.json")
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
    if not reused.empty:
        paradigms.write(reused, reused_curves, TABLES, FIGURES, n)
    tables.write_rows(claims.claims_rows(pd.concat([df, reused]), mia), TABLES / "claims",
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

    if not points.empty:
        ablation.write_tables(points, TABLES, n)
        for sweep, mine in points.groupby("sweep"):
            mains = {d: main_value(params, sweep, Recipe.from_params(params, d).batch_size)
                     for d in mine["dataset"].unique()}
            ablation.figure(mine, mains, FIGURES / f"ablation-{sweep}.png",
                            f"Ablation: {SWEEPS[sweep].label} (mean ± sd, {n} seeds; dotted: the main grid's value)")

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
