"""metrics/summary.json: {paradigm: {dataset: {attack: {defense: {"ca", "asr", "ra", "seconds", ...}}}}}.

Built from the per-cell files the stages write. Under each attack, "none" is the backdoored model
and "clean" the clean reference model (its CA, and its sequela measured with that attack's trigger).
Only numbers go into the summary, so `dvc metrics diff` compares like with like.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

KEYS = ("paradigm", "dataset", "attack", "defense")


def read_cell(path: Path) -> dict:
    """One cell's figures; a missing file is an error (its stage should have made it)."""
    if not path.is_file():
        raise FileNotFoundError(f"missing cell metrics {path}: run its stage (dvc repro)")
    return json.loads(path.read_text())


def merge(cell: dict, sequela: dict) -> dict:
    """A model's defense figures plus its sequela figures; the sequela's own cost is `sequela_seconds`."""
    extra = {("sequela_seconds" if k == "seconds" else k): v for k, v in sequela.items() if k not in KEYS}
    return {**cell, **extra}


def numbers(cell: dict) -> dict:
    return {k: v for k, v in cell.items()
            if k not in KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)}


def nest(cells: list[dict]) -> dict:
    summary: dict = {}
    for cell in cells:
        node = summary
        for key in KEYS[:-1]:
            node = node.setdefault(cell[key], {})
        node[cell["defense"]] = numbers(cell)
    return summary


def frame(cells: list[dict]) -> pd.DataFrame:
    """One row per cell, in grid order."""
    return pd.DataFrame(cells)
