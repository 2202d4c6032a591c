"""Tables of mean ± sd over seeds, written as Markdown, CSV and LaTeX.

A table is a list of rows; each row has its key columns (dataset, attack, ...) as plain values and
its figures as (mean, sd) pairs. Markdown and LaTeX print "mean ± sd"; the CSV keeps the numbers,
one `<column> mean` and one `<column> sd` column per figure, for anyone who wants to re-plot them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sequela.pipeline.io import atomic_write_text
from sequela.report.stats import fmt, mean_sd

LABELS = {
    "ca": "CA",
    "asr": "ASR",
    "ra": "RA",
    "seconds": "s",
    "p_asr": "P-ASR",
    "p_ca": "CA after retuning",
    "ca_change": "ΔCA",
}
# Models that are references, not defenses: every table says so in their header.
REFERENCES = {"ep": "EP (reference, knows the trigger)"}


def spread_rows(
    df: pd.DataFrame, index: list[str], column: str, order: list[str], figures: tuple[str, ...] = ("ca", "asr")
) -> list[dict]:
    """One row per value of `index`; for each value of `column` in `order` and each figure, the
    (mean, sd) over the seeds of that cell, under the header "<value> <FIGURE>"."""
    rows = []
    for key, group in df.groupby(index, sort=False):
        row = dict(zip(index, key if isinstance(key, tuple) else (key,)))
        for value in order:
            cell = group[group[column] == value]
            for figure in figures:
                if figure in cell and cell[figure].notna().any():
                    mean, sd, _ = mean_sd(cell[figure].astype(float))
                    row[f"{REFERENCES.get(value, value)} {LABELS.get(figure, figure)}"] = (mean, sd)
        rows.append(row)
    return rows


def write_rows(rows: list[dict], stem: Path, caption: str) -> None:
    """Markdown, CSV and LaTeX of `rows` (plain values, or (mean, sd) pairs printed as mean ± sd)."""
    columns = list(dict.fromkeys(c for row in rows for c in row))
    text = pd.DataFrame(
        [{c: fmt(*row[c]) if isinstance(row.get(c), tuple) else row.get(c, "–") for c in columns} for row in rows],
        columns=columns,
    )
    numbers = []
    for row in rows:
        flat = {}
        for c in columns:
            value = row.get(c)
            if isinstance(value, tuple):
                flat[f"{c} mean"], flat[f"{c} sd"] = value
            else:
                flat[c] = value
        numbers.append(flat)
    atomic_write_text(pd.DataFrame(numbers).to_csv(index=False, float_format="%.4f"), stem.with_suffix(".csv"))
    atomic_write_text(
        f"{caption}\n\n" + text.to_markdown(index=False, disable_numparse=True) + "\n", stem.with_suffix(".md")
    )
    latex = text.to_latex(index=False, caption=caption, label=f"tab:{stem.name}").replace("±", r"$\pm$")
    atomic_write_text(latex, stem.with_suffix(".tex"))
