"""Seaborn figures: per-epoch defense curves, the SFT schedule, and trigger previews."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402

from sequela.engine.schedules import Schedule  # noqa: E402
from sequela.pipeline.io import atomic_path  # noqa: E402


def save(fig: plt.Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


# Method and attack names as the papers write them, for legends and panel titles.
NAMES = {
    "none": "no defense",
    "clean": "clean model",
    "ft": "FT",
    "sft": "SFT",
    "fp": "FP",
    "nad": "NAD",
    "nc": "NC",
    "fst": "FST",
    "ftsam": "FT-SAM",
    "sau": "SAU",
    "btidbf": "BTI-DBF(U)",
    "pam": "PAM",
    "ep": "EP (knows the trigger)",
    "sbl": "SBL",
    "abl": "ABL",
    "ac": "AC",
    "spectral": "Spectral",
    "badnets": "BadNets",
    "blended": "Blended",
    "lf": "LF",
    "wanet": "WaNet",
    "inputaware": "Input-aware",
    "badencoder": "BadEncoder",
}


def named(series: pd.Series) -> pd.Series:
    return series.map(lambda v: NAMES.get(v, v))


def clipped_sd(values) -> tuple[float, float]:
    """mean ± sd, clipped to [0, 1]: a fraction's band never leaves the axis it lives on."""
    values = pd.Series(values, dtype=float)
    mean, sd = values.mean(), (values.std() if len(values) > 1 else 0.0)
    return max(0.0, mean - sd), min(1.0, mean + sd)


def defense_curves(
    curves: pd.DataFrame, path: Path, title: str, floors: dict[str, float] | None = None, by: str = "attack"
) -> None:
    """ASR (top row) and CA (bottom row) against defense epoch: with by="attack" one column per
    attack and one colour per defense, with by="defense" one column per defense and one colour per
    attack. Lines are means over seeds, bands mean ± sd clipped to [0, 1]; a dotted line marks the
    clean model's ASR on the trigger (`floors`: attack -> that floor), the level a removed backdoor
    falls to. `curves` has columns attack, defense, seed, epoch, ca, asr."""
    hue = "defense" if by == "attack" else "attack"
    long = curves.melt(id_vars=["attack", "defense", "seed", "epoch"], value_vars=["asr", "ca"], var_name="figure")
    long["figure"] = long["figure"].map({"asr": "ASR", "ca": "CA"})
    columns, levels = list(dict.fromkeys(curves[by])), list(dict.fromkeys(curves[hue]))
    palette = dict(zip((NAMES.get(v, v) for v in levels), sns.color_palette("tab10", len(levels))))
    long[by], long[hue] = named(long[by]), named(long[hue])
    grid = sns.relplot(
        data=long,
        kind="line",
        x="epoch",
        y="value",
        hue=hue,
        palette=palette,
        row="figure",
        col=by,
        col_order=[NAMES.get(c, c) for c in columns],
        row_order=["ASR", "CA"],
        height=2.4,
        aspect=1.15,
        marker="o",
        markersize=3,
        errorbar=clipped_sd,
        facet_kws={"margin_titles": True},
    )
    grid.set(ylim=(-0.02, 1.02))
    grid.set_titles(col_template="{col_name}", row_template="{row_name}")
    for (row, col), ax in grid.axes_dict.items():
        ax.set_ylabel(row)
        if row != "ASR" or not floors:
            continue
        if by == "attack":  # one attack per panel: its floor in grey
            attack = columns[[NAMES.get(c, c) for c in columns].index(col)]
            if attack in floors:
                ax.axhline(floors[attack], color="0.3", ls=":", lw=1)
        else:  # every attack in each panel: each floor in its attack's colour
            for attack, floor in floors.items():
                if NAMES.get(attack, attack) in palette:
                    ax.axhline(floor, color=palette[NAMES.get(attack, attack)], ls=":", lw=0.8)
    grid.figure.suptitle(title + ("; dotted: the clean model's ASR" if floors else ""), y=1.02)
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
            ax.imshow(
                image.squeeze(-1) if image.shape[-1] == 1 else image,
                cmap="gray",
                vmin=0,
                vmax=1,
                interpolation="nearest",
            )
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title)
    save(fig, path)


def sft_schedule_figure(df: pd.DataFrame, sft_settings: dict, out: Path) -> None:
    """SFT's learning rate against step, as the first SFT cell of `df` ran it (none: no figure)."""
    from sequela.engine.schedules import sft_from_params

    sft = df[df["defense"] == "sft"]
    if sft.empty:
        return
    cell = sft.iloc[0]
    steps, epochs = int(cell["steps_per_epoch"]), int(cell["epochs"])
    schedule_plot(
        sft_from_params(sft_settings, epochs, steps),
        epochs * steps,
        steps,
        out,
        f"SFT learning rate ({cell['dataset']}, {steps} steps per epoch)",
    )
