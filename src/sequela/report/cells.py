"""What the report stage reads: every cell of the grid as rows (one per model and seed), the paradigms'
and external cells, the ablation points, the curves, each from where the layout puts it."""

import pandas as pd
import torch

from sequela.attacks.registry import load_artefact
from sequela.datasets import splits
from sequela.pipeline import layout
from sequela.report import ablation, figures, paradigms, summary
from sequela.sweeps import in_main_grid, main_value, points_by_sweep, same_value
from sequela.training.recipe import Recipe

PREVIEW_IMAGES = 6  # one image per class where possible: the trigger on varied content


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
                none = summary.read_cell(layout.backdoored_metrics(d, a, seed))
                cells = {"clean": summary.reference(clean, none["rounds"]), "none": none, **defended}
                for model in ["clean", "none", *grid["defenses"]]:
                    own = {k: v for k, v in cells[model].items() if k not in summary.KEYS and k != "seed"}
                    rows.append({**key, "defense": model, **summary.merge(own, measured[model])})
    return rows


def benign(grid: dict) -> pd.DataFrame:
    """One row per (dataset, model, seed) of the benign condition: the clean reference as trained
    ("none") and after each post-training defense, under the attack name BENIGN."""
    rows = []
    for d in grid["datasets"]:
        for seed in grid["seeds"]:
            cell = summary.read_cell(layout.benign_metrics(d, seed))
            key = {"paradigm": layout.STANDALONE, "dataset": d, "attack": summary.BENIGN, "seed": seed}
            rows.append({**key, "defense": "none", **cell["none"]})
            rows += [{**key, "defense": name, **figures} for name, figures in cell["defenses"].items()]
    return pd.DataFrame(rows)


def paradigm_cells(params: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The transfer and encoder paradigms' rows (one per model and seed) and their FT / SFT curves."""
    rows, runs, seeds = [], [], params["grid"]["seeds"]
    t, e = params["transfer"], params["encoder"]
    cells = [
        (
            "transfer",
            layout.pair(u, d),
            a,
            s,
            layout.transfer_metrics(layout.pair(u, d), a, s),
            layout.transfer_curves(layout.pair(u, d), a, s),
        )
        for u in t["upstream"]
        for d in t["downstream"]
        for a in t["attacks"]
        for s in seeds
    ]
    cells += [
        (
            "encoder",
            layout.pair(p, d),
            "badencoder",
            s,
            layout.encoder_downstream_metrics(layout.pair(p, d), s),
            layout.encoder_curves(layout.pair(p, d), s),
        )
        for p in e["pretrain"]
        for d in e["downstream"]
        for s in seeds
    ]
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
        return {
            "dataset": d,
            "attack": a,
            "sweep": sweep,
            "value": value,
            "defense": model,
            "seed": seed,
            "main_grid": True,
            **{k: f[k] for k in ablation.FIGURES},
        }

    for d in abl["datasets"]:
        recipe_batch = Recipe.from_params(params, d).batch_size
        for sweep, listed in points_by_sweep(abl["points"]).items():
            main = main_value(params, sweep, recipe_batch)
            in_main = in_main_grid(params, sweep)
            for a in abl["attacks"]:
                for seed in seeds:
                    # the main grid is a point of the sweep unless it has no value there (victim_rounds)
                    if main is not None and not any(same_value(v, main) for _, v in listed):
                        rows += [from_main(d, a, sweep, main, m, seed) for m in in_main]
                    for point, value in listed:
                        cell = summary.read_cell(layout.ablation_metrics(d, seed, point))
                        rows += [from_main(d, a, sweep, value, m, seed) for m in cell["from_main_grid"]]
                        rows += [
                            {
                                "dataset": d,
                                "attack": a,
                                "sweep": sweep,
                                "value": value,
                                "defense": m,
                                "seed": seed,
                                "main_grid": False,
                                **{k: f.get(k) for k in ablation.FIGURES},  # a clean reference has no defense seconds
                            }
                            for m, f in cell["attacks"][a]["models"].items()
                        ]
    return pd.DataFrame(rows)


def curves(grid: dict, dataset: str) -> pd.DataFrame:
    return pd.concat(
        [
            pd.read_csv(layout.defense_curve(dataset, a, s, f), sep="\t").assign(attack=a, defense=f, seed=s)
            for a in grid["attacks"]
            for f in grid["defenses"]
            for s in grid["seeds"]
        ]
    )


def preview(dataset: str, attacks: list[str], seed: int, out) -> None:
    ds, _ = splits.load_prepared(layout.prepared(dataset))
    picks = [
        int(torch.nonzero(ds.test.y == c)[0])
        for c in range(min(PREVIEW_IMAGES, ds.num_classes))
        if bool((ds.test.y == c).any())
    ]
    clean = ds.test.x[picks].float() / 255.0
    triggered = {a: load_artefact(layout.poison(dataset, a, seed))[0].apply(clean) for a in attacks}
    figures.trigger_preview(clean, triggered, out, f"{dataset}: triggers")


def external_cells(params: dict) -> pd.DataFrame:
    """One row per (external cell, model, seed): the model as given ("none") and each defense."""
    return pd.DataFrame(
        [
            {"paradigm": "external", "dataset": name, "attack": "external", "defense": model, "seed": seed, **figures}
            for name in params["external"]["cells"]
            for seed in params["grid"]["seeds"]
            for model, figures in summary.read_cell(layout.external_metrics(name, seed))["models"].items()
        ]
    )
