"""Per-epoch curves and per-cell results, in the files DVC tracks as plots and metrics.

Fractions are rounded to three decimals, as the paper prints them; the rounding also makes the
files byte-identical across reruns with the same seed on the same machine.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from sequela.pipeline.io import atomic_write_json, atomic_write_text

CURVE_COLUMNS = ("epoch", "ca", "asr", "ra", "lr")


def rounded(figures):
    """Floats to three decimals, at any depth of dicts and lists."""
    if isinstance(figures, dict):
        return {k: rounded(v) for k, v in figures.items()}
    if isinstance(figures, list):
        return [rounded(v) for v in figures]
    return round(figures, 3) if isinstance(figures, float) else figures


class CurveRecorder:
    """Evaluates a model after each epoch and keeps the rows; the evaluation time is tracked
    separately so it can be left out of a stage's reported cost."""

    def __init__(self, evaluate: Callable[[torch.nn.Module], dict[str, float]]):
        self.evaluate = evaluate
        self.rows: list[dict] = []
        self.eval_seconds = 0.0

    def record(self, model: torch.nn.Module, epoch: int, lr: float) -> dict:
        start = time.perf_counter()
        row = {"epoch": epoch, **self.evaluate(model), "lr": lr}
        self.rows.append(row)
        self.eval_seconds += time.perf_counter() - start
        return row


def write_curve(rows: list[dict], path: str | Path) -> None:
    """TSV with the columns of CURVE_COLUMNS that the rows have (a clean model has no ASR)."""
    columns = [c for c in CURVE_COLUMNS if c in rows[0]]
    formats = {"epoch": "{}", "lr": "{:.6g}"}
    lines = ["\t".join(columns)]
    for row in rows:
        lines.append("\t".join(formats.get(c, "{:.3f}").format(row[c]) for c in columns))
    atomic_write_text("\n".join(lines) + "\n", path)


def write_cell(figures: dict, path: str | Path) -> None:
    atomic_write_json(rounded(figures), path)
