"""SFT against the baseline defenses: a table of CA / ASR / cost and a CA-vs-ASR scatter.

Both take the report's one-row-per-cell frame (columns dataset, attack, defense, ca, asr, seconds);
write the table with `tables.write_table`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns

from sequela.report import figures, tables

# The paper's order: the proposed method, plain fine-tuning, then the baselines it is compared with.
ORDER = ("sft", "ft", "fp", "nad", "nc", "abl", "ac", "spectral")


def defense_order(df: pd.DataFrame) -> list[str]:
    """The defenses present in `df` (the undefended "none" left out), known ones in ORDER first."""
    present = [d for d in df["defense"].unique() if d != "none"]
    return [d for d in ORDER if d in present] + [d for d in present if d not in ORDER]


def baselines_table(df: pd.DataFrame) -> pd.DataFrame:
    """Rows (dataset, attack); for each defense its CA, ASR and wall seconds. The clean reference
    row (attack "clean") has no defenses and is left out."""
    defended = df[(df["defense"] != "none") & (df["attack"] != "clean")]
    return tables.before_after(defended, defense_order(defended), figures=("ca", "asr", "seconds"))


def ca_vs_asr_figure(df: pd.DataFrame, path: Path) -> None:
    """Each defended cell as a point: x its ASR, y its CA, colour the defense, marker the attack;
    one panel per dataset. Good defenses sit top left."""
    cells = df[(df["defense"] != "none") & (df["attack"] != "clean")]
    datasets = list(cells["dataset"].unique())
    grid = sns.relplot(data=cells, kind="scatter", x="asr", y="ca", hue="defense", style="attack",
                       hue_order=defense_order(cells), col="dataset", col_order=datasets,
                       col_wrap=min(3, len(datasets)), height=3.5, s=60)
    grid.set(xlim=(-0.03, 1.03), xlabel="ASR (lower is better)", ylabel="CA (higher is better)")
    grid.figure.suptitle("Clean accuracy against attack success after each defense", y=1.03)
    figures.save(grid.figure, Path(path))
