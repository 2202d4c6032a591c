"""The transfer and encoder paradigms in the report: their summary sections, tables and curves.

Rows have the standalone report's shape, (paradigm, dataset, attack, defense, seed) and figures,
with the pair `<upstream>-to-<downstream>` as the dataset and, in the encoder paradigm, the attack
"badencoder". Models: "clean" (a head on the clean upstream model or clean encoder: the trigger's
floor without a backdoor), "none" (a head on the shipped backdoored model), "ft" and "sft". Their
sequela (src/sequela/measures/reused.py) gets the standalone paradigm's table and figure, per paradigm.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sequela.measures import registry
from sequela.report import figures, sequela_tables, tables

MODELS = ("clean", "none", "ft", "sft")
FIGURES = ("ca", "asr", "ra", "seconds", "epochs", *registry.downstream_figures(), "sequela_seconds")


def rows_of(paradigm: str, pair: str, attack: str, seed: int, cell: dict) -> list[dict]:
    return [
        {
            "paradigm": paradigm,
            "dataset": pair,
            "attack": attack,
            "defense": model,
            "seed": seed,
            **{k: cell["models"][model].get(k) for k in FIGURES},
        }
        for model in MODELS
    ]


def curve_rows(attack: str, seed: int, folder: Path) -> pd.DataFrame:
    """The FT and SFT per-epoch curves of one cell (epoch 0 = the baseline "none")."""
    return pd.concat(
        [pd.read_csv(folder / f"{m}.tsv", sep="\t").assign(attack=attack, defense=m, seed=seed) for m in ("ft", "sft")]
    )


def write(df: pd.DataFrame, curves: pd.DataFrame, tables_dir: Path, figures_dir: Path, n: int) -> None:
    """One table per paradigm and one curve figure per pair."""
    captions = {
        "transfer": "Transfer paradigm: CA and ASR on the downstream task (mean ± sd over {n} seeds). clean / none: "
        "a new head on the frozen clean / backdoored upstream model; ft / sft: the whole backdoored "
        "model fine-tuned on the downstream data.",
        "encoder": "Encoder paradigm (BadEncoder): CA and ASR on the downstream task (mean ± sd over {n} seeds). "
        "clean / none: an MLP head on the frozen clean / backdoored SimCLR encoder; ft / sft: encoder "
        "and head fine-tuned on the downstream data.",
    }
    for paradigm, mine in df.groupby("paradigm", sort=False):
        rows = tables.spread_rows(mine, ["dataset", "attack"], "defense", list(MODELS))
        tables.write_rows(rows, tables_dir / paradigm, captions[paradigm].format(n=n))
        if "reinject_asr" in mine and mine["reinject_asr"].notna().any():
            tables.write_rows(
                sequela_tables.sequela_rows(mine, list(MODELS)),
                tables_dir / f"{paradigm}-sequela",
                f"{paradigm} paradigm: sequela on the downstream task (mean ± sd over {n} seeds), each "
                "measure and its per-seed change from the head on the frozen backdoored model "
                "(Δ = after - none); membership by the metric attacks only.",
            )
            for pair, cell in mine.groupby("dataset", sort=False):
                sequela_tables.sequela_figure(
                    cell,
                    figures_dir / f"sequela-{paradigm}-{pair}.png",
                    f"{paradigm} {pair}: sequela, after FT / SFT - head on the frozen "
                    f"backdoored model (per seed; sd bars)",
                )
    for (paradigm, pair), runs in curves.groupby(["paradigm", "dataset"], sort=False):
        cells = df[(df["paradigm"] == paradigm) & (df["dataset"] == pair) & (df["defense"] == "clean")]
        figures.defense_curves(
            runs,
            figures_dir / f"curves-{paradigm}-{pair}.png",
            f"{paradigm} {pair}: ASR and CA during FT and SFT of the whole model "
            f"(epoch 0 = head on the frozen backdoored model; mean ± sd over {n} seeds)",
            cells.groupby("attack")["asr"].mean().to_dict(),
        )
