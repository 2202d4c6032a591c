"""The paper's standalone table: rows dataset x attack; CA and ASR for each defense."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sequela.io import atomic_write_text


def before_after(df: pd.DataFrame, defenses: list[str], figures: tuple[str, ...] = ("ca", "asr")) -> pd.DataFrame:
    """Wide table: index (dataset, attack); columns (defense, figure), defenses in the given order."""
    wide = df.pivot_table(index=["dataset", "attack"], columns="defense", values=list(figures), sort=False)
    wide = wide.swaplevel(0, 1, axis=1)
    columns = [(d, f) for d in defenses for f in figures if (d, f) in wide.columns]
    return wide[columns]


def flat_columns(table: pd.DataFrame) -> pd.DataFrame:
    out = table.copy()
    out.columns = [f"{d} {'s' if f == 'seconds' else f.upper()}" for d, f in table.columns]
    return out.reset_index()


def write_table(table: pd.DataFrame, stem: Path, caption: str) -> None:
    """Markdown, CSV and LaTeX versions of a wide (defense, figure) table."""
    write_long_table(flat_columns(table), stem, caption)


def write_long_table(flat: pd.DataFrame, stem: Path, caption: str) -> None:
    """Markdown, CSV and LaTeX versions of a flat table, numbers with three decimals."""
    atomic_write_text(flat.to_csv(index=False, float_format="%.3f"), stem.with_suffix(".csv"))
    # Cells a model has no figure for (the clean reference's ASR) print as a dash, not "nan".
    text = flat.map(lambda v: "–" if pd.isna(v) else f"{v:.3f}" if isinstance(v, float) else v)
    atomic_write_text(text.to_markdown(index=False, disable_numparse=True) + "\n", stem.with_suffix(".md"))
    latex = text.to_latex(index=False, caption=caption, label=f"tab:{stem.name}")
    atomic_write_text(latex, stem.with_suffix(".tex"))
