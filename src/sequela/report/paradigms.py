"""The transfer and encoder paradigms in the report: their summary sections, tables and curves.

Rows have the standalone report's shape, (paradigm, dataset, attack, defense, seed) and figures,
with the pair `<upstream>-to-<downstream>` as the dataset and, in the encoder paradigm, the attack
"badencoder". Models: "clean" (a head on the clean upstream model or clean encoder: the trigger's
floor without a backdoor), "none" (a head on the shipped backdoored model), "ft" and "sft".
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sequela.report import figures, tables

MODELS = ("clean", "none", "ft", "sft")
FIGURES = ("ca", "asr", "ra", "seconds", "epochs")


def rows_of(paradigm: str, pair: str, attack: str, seed: int, cell: dict) -> list[dict]:
    return [{"paradigm": paradigm, "dataset": pair, "attack": attack, "defense": model, "seed": seed,
             **{k: cell["models"][model].get(k) for k in FIGURES}} for model in MODELS]


def curve_rows(attack: str, seed: int, folder: Path) -> pd.DataFrame:
    """The FT and SFT per-epoch curves of one cell (epoch 0 = the baseline "none")."""
    return pd.concat([pd.read_csv(folder / f"{m}.tsv", sep="\t").assign(attack=attack, defense=m, seed=seed)
                      for m in ("ft", "sft")])


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
    for (paradigm, pair), runs in curves.groupby(["paradigm", "dataset"], sort=False):
        figures.defense_curves(runs, figures_dir / f"curves-{paradigm}-{pair}.png",
                               f"{paradigm} {pair}: ASR and CA during FT and SFT of the whole model "
                               f"(epoch 0 = head on the frozen backdoored model; mean ± sd over {n} seeds)")

