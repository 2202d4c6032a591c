"""metrics/summary.json: {paradigm: {dataset: {attack: {defense: {"ca", "asr", "ra", "seconds", ...}}}}}."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

KEYS = ("paradigm", "dataset", "attack", "defense")


def read_cells(paths: list[Path]) -> list[dict]:
    """Per-cell figure files; a missing one is an error (its stage should have made it)."""
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"missing cell metrics: {', '.join(missing)}")
    return [json.loads(p.read_text()) for p in paths]


def nest(cells: list[dict]) -> dict:
    summary: dict = {}
    for cell in cells:
        node = summary
        for key in KEYS[:-1]:
            node = node.setdefault(cell[key], {})
        node[cell["defense"]] = {k: v for k, v in cell.items() if k not in KEYS}
    return summary


def frame(cells: list[dict]) -> pd.DataFrame:
    """One row per cell, in grid order."""
    return pd.DataFrame(cells)
