"""SFT against the baseline defenses: a table of CA / ASR / cost and a CA-vs-ASR scatter.

Both take the report's one-row-per-(cell, seed) frame (columns dataset, attack, defense, seed, ca, asr,
seconds).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns

from sequela.report import figures
from sequela.report.figures import NAMES

# The paper's order: the proposed method, plain fine-tuning, then the baselines it is compared with.
ORDER = ("sft", "ft", "fst", "ftsam", "fp", "nad", "nc", "abl", "ac", "spectral")


def defense_order(df: pd.DataFrame) -> list[str]:
    """The defenses present in `df` (the undefended "none" left out), known ones in ORDER first."""
    present = [d for d in df["defense"].unique() if d not in ("none", "clean")]
    return [d for d in ORDER if d in present] + [d for d in present if d not in ORDER]


def ca_vs_asr_figure(df: pd.DataFrame, path: Path, title: str) -> None:
    """Each defended (attack, defense) cell as its mean over seeds, with sd error bars in both
    directions: x its ASR, y its CA, colour the defense, marker the attack. Good defenses sit top left."""
    import matplotlib.pyplot as plt

    cells = df[~df["defense"].isin(["none", "clean"])]
    stats = cells.groupby(["attack", "defense"], sort=False)[["ca", "asr"]].agg(["mean", "std"]).reset_index()
    order = defense_order(cells)
    colours = dict(zip(order, sns.color_palette("tab10", len(order))))
    markers = dict(zip(cells["attack"].unique(), "osD^vP*X"))
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for _, row in stats.iterrows():
        ax.errorbar(
            row[("asr", "mean")],
            row[("ca", "mean")],
            xerr=row[("asr", "std")],
            yerr=row[("ca", "std")],
            fmt=markers[row[("attack", "")]],
            color=colours[row[("defense", "")]],
            ms=6,
            capsize=2,
            lw=0.8,
        )
    for name in order:
        ax.plot([], [], "o", color=colours[name], label=NAMES.get(name, name))
    for attack, marker in markers.items():
        ax.plot([], [], marker, color="0.4", label=NAMES.get(attack, attack))
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    ax.set(xlim=(-0.03, 1.03), xlabel="ASR (lower is better)", ylabel="CA (higher is better)", title=title)
    figures.save(fig, Path(path))
