"""Seaborn figures: per-epoch defense curves, the SFT schedule, and trigger previews."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402

from sequela.io import atomic_path  # noqa: E402
from sequela.schedules import Schedule  # noqa: E402


def save(fig: plt.Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def defense_curves(curves: pd.DataFrame, path: Path, title: str) -> None:
    """ASR (solid) and CA (dashed) against defense epoch, one panel per attack, one colour per
    defense; the line is the mean over seeds and the band its sd. `curves` has columns attack,
    defense, seed, epoch, ca, asr."""
    long = curves.melt(id_vars=["attack", "defense", "seed", "epoch"], value_vars=["asr", "ca"], var_name="figure")
    long["figure"] = long["figure"].str.upper()
    grid = sns.relplot(data=long, kind="line", x="epoch", y="value", hue="defense", style="figure",
                       col="attack", col_wrap=min(3, long["attack"].nunique()), height=3, aspect=1.2,
                       markers=True, dashes={"ASR": "", "CA": (4, 2)}, errorbar="sd")
    grid.set(ylim=(-0.02, 1.02), ylabel="fraction")
    grid.figure.suptitle(title, y=1.03)
    save(grid.figure, path)


def schedule_plot(schedule: Schedule, total_steps: int, steps_per_epoch: int, path: Path, title: str) -> None:
    steps = list(range(total_steps))
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot(steps, [schedule(s) for s in steps], lw=1)
    for e in range(0, total_steps + 1, steps_per_epoch):
        ax.axvline(e, color="0.85", lw=0.5, zorder=0)
    ax.set(xlabel="step", ylabel="learning rate", yscale="log", title=title)
    save(fig, path)


def trigger_preview(clean: torch.Tensor, triggered: dict[str, torch.Tensor], path: Path, title: str) -> None:
    """Rows: the clean images, then for each attack its triggered images and the residual
    |triggered - clean|, scaled so each image's largest change is white."""
    rows = [("clean", clean)]
    for name, x in triggered.items():
        residual = (x - clean).abs()
        peak = residual.flatten(1).amax(1).clamp_min(1e-8).view(-1, 1, 1, 1)
        rows += [(name, x), (f"{name}\nresidual\n(rescaled)", residual / peak)]
    n = clean.shape[0]
    fig, axes = plt.subplots(len(rows), n, figsize=(1.3 * n, 1.3 * len(rows)), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(n):
            image = images[c].clamp(0, 1).permute(1, 2, 0).cpu().numpy()
            ax = axes[r][c]
            ax.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title)
    save(fig, path)


def sft_schedule_figure(df: pd.DataFrame, sft_settings: dict, out: Path) -> None:
    """SFT's learning rate against step, as the first SFT cell of `df` ran it (none: no figure)."""
    from sequela.schedules import sft_from_params

    sft = df[df["defense"] == "sft"]
    if sft.empty:
        return
    cell = sft.iloc[0]
    steps, epochs = int(cell["steps_per_epoch"]), int(cell["epochs"])
    schedule_plot(sft_from_params(sft_settings, epochs, steps), epochs * steps, steps, out,
                  f"SFT learning rate ({cell['dataset']}, {steps} steps per epoch)")
