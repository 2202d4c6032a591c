"""The report of `sequela defend`: figures over seeds, the collapse check, each defense's settings
and the per-epoch curves (report.json, report.md, curves.png)."""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

# A defended model whose CA on the validation rows falls more than this below the given model's
# has collapsed: the defense bought its ASR with the model's usefulness.
COLLAPSE_DROP = 0.05

# What each defense is, for `sequela defend --help`. A defense added to the registry without a line
# here is described by the first line of its module's docstring.
DESCRIPTIONS = {
    "ft": "fine-tuning, the whole model on the clean data, constant lr",
    "sft": "super-fine-tuning, as FT with a two-phase triangular cyclical lr",
    "fp": "fine-pruning (Liu et al., 2018): prune last-stage channels idle on clean data, then fine-tune",
    "nad": "neural attention distillation (Li et al., 2021): a fine-tuned teacher's attention maps guide the model",
    "nc": "Neural Cleanse (Wang et al., 2019): reverse a trigger per class, unlearn the anomalous ones",
    "fst": "feature shift tuning (Min et al., 2023): a new head pushed away from the old one, norm held",
    "ftsam": "FT-SAM (Zhu et al., 2023): fine-tuning with adaptive sharpness-aware minimisation",
    "sau": "shared adversarial unlearning (Wei et al., 2023): unlearn perturbations shared with the backdoor",
    "btidbf": "BTI-DBF(U) (Xu et al., 2024): invert the backdoor from benign-feature decoupling, unlearn it",
    "pam": "path-aware minimisation (Min et al., 2024): BTI-DBF's data, gradients pulled toward the given weights",
}

# Each defense's schedule, for the settings table (its learning-rate keys: lr_rule.LR_KEYS).
SCHEDULES = {
    "ft": "constant",
    "sft": "two-phase triangular",
    "fp": "constant",
    "nad": "constant",
    "nc": "constant",
    "fst": "cosine",
    "ftsam": "cosine",
    "sau": "constant (Adam)",
    "btidbf": "constant (Adam)",
    "pam": "constant",
}

TABLE = ["ca", "val_ca", "asr", "ra", "p_asr", "mia_loss_auc", "seconds"]
# Settings the units report beside their figures: not averaged.
NOT_FIGURES = {"epochs", "n_clean", "batch_size", "steps_per_epoch", "cycle_steps", "lr_scale"}


def describe(name: str) -> str:
    if name in DESCRIPTIONS:
        return DESCRIPTIONS[name]
    from sequela.defenses.registry import DEFENSES

    doc = sys.modules[DEFENSES[name].run.__module__].__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else "(no description)"


def steps(epochs: int, rows: int, batch: int) -> int:
    """Optimisation steps of `epochs` passes over `rows` rows in batches of `batch`."""
    return epochs * math.ceil(rows / batch)


def settings_of(name: str, block: dict, figures: dict, rows: int, rule: str) -> dict:
    """Rule, lr, schedule, epochs, steps and batch of defense `name` as it ran on `rows` training
    rows; `block` holds its settings with the learning rates it ran at."""
    from sequela.cli.lr_rule import LR_KEYS

    keys, schedule = LR_KEYS.get(name, ("lr",)), SCHEDULES.get(name, f"see defense.{name}")
    lr = "/".join(f"{block[k]:g}" for k in keys if k in block) or None
    epochs, batch = figures.get("epochs"), figures.get("batch_size")
    if rule == "validated":
        rule = f"validated, x{figures['lr_scale']:g}"
    return {
        "rule": rule,
        "lr": lr,
        "schedule": schedule,
        "epochs": epochs,
        "batch": batch,
        "steps": steps(epochs, rows, batch) if epochs is not None and batch else None,
    }


def numbers(figures: dict) -> dict:
    return {
        k: v
        for k, v in figures.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in NOT_FIGURES
    }


def spread(values: list[dict]) -> tuple[dict, dict]:
    """Mean and sd (0 for one seed) of each figure every seed has."""
    keys = [k for k in numbers(values[0]) if all(isinstance(numbers(v).get(k), (int, float)) for v in values)]
    means = {k: statistics.mean(v[k] for v in values) for k in keys}
    sds = {k: statistics.stdev(v[k] for v in values) if len(values) > 1 else 0.0 for k in keys}
    return means, sds


def build_report(runs: dict, inputs, args, device: str) -> dict:
    """`runs`: {seed: {"n_train", "n_val", name: {"figures", "curve", "retune_curve"}}}."""
    from sequela.cli.lr_rule import applies, scaled_settings
    from sequela.defenses.base import defense_settings

    seeds, names = list(runs), ["none", *inputs.names]
    per_seed = {s: {n: dict(runs[s][n]["figures"]) for n in names} for s in seeds}
    checked = all(per_seed[s]["none"]["val_ca"] is not None for s in seeds)
    collapse = {}
    for name in inputs.names:
        fell = []
        for s in seeds:
            given, defended = per_seed[s]["none"]["val_ca"], per_seed[s][name]["val_ca"]
            per_seed[s][name]["collapsed"] = given - defended > COLLAPSE_DROP if checked else None
            if checked and per_seed[s][name]["collapsed"]:
                fell.append(s)
        if checked:
            collapse[name] = {
                "collapsed": bool(fell),
                "seeds": fell,
                "given_val_ca": statistics.mean(per_seed[s]["none"]["val_ca"] for s in seeds),
                "val_ca": statistics.mean(per_seed[s][name]["val_ca"] for s in seeds),
            }
    means, sds = {}, {}
    for name in names:
        means[name], sds[name] = spread([per_seed[s][name] for s in seeds])
    first = seeds[0]
    n_train = runs[first]["n_train"]
    settings = {}
    for name in inputs.names:
        rule = "validated" if applies(inputs.rule, name) else "fixed"
        each = [
            settings_of(
                name,
                defense_settings(scaled_settings(inputs.settings, name, per_seed[s][name].get("lr_scale", 1.0)), name),
                per_seed[s][name],
                n_train,
                rule,
            )
            for s in seeds
        ]
        settings[name] = {
            k: each[0][k] if all(e[k] == each[0][k] for e in each) else [e[k] for e in each] for k in each[0]
        }
    report = {
        "model": str(args.model),
        "spec": inputs.spec,
        "seeds": seeds,
        "n": len(seeds),
        "device": device,
        "resized": inputs.resized,
        "n_clean": len(inputs.splits["clean"]),
        "val_share": args.val_share,
        "n_val": runs[first]["n_val"],
        "n_train": n_train,
        "collapse_drop": COLLAPSE_DROP,
        "lr_rule": {"rule": inputs.rule.name, "scales": list(inputs.rule.scales), "drop": inputs.rule.drop},
        "settings": settings,
        "models": means,
        "sd": sds,
        "collapse": collapse,
        "runs": {
            str(s): {
                "models": per_seed[s],
                "curves": {n: runs[s][n]["curve"] for n in inputs.names},
                "lr_choice": {n: runs[s][n]["lr_choice"] for n in inputs.names},
            }
            for s in seeds
        },
    }
    if inputs.retune is not None:
        report["retune"] = {**inputs.retune, "poisons": str(args.poisons), "n_poisons": len(inputs.splits["poisons"])}
        for s in seeds:
            report["runs"][str(s)]["retune_curves"] = {n: runs[s][n]["retune_curve"] for n in names}
    return report


def cell(mean: float | None, sd: float | None, n: int, digits: int = 3) -> str:
    if mean is None:
        return ""
    return f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if n > 1 and sd is not None else "")


def markdown(report: dict) -> str:
    n, seeds = report["n"], ", ".join(map(str, report["seeds"]))
    lines = [
        f"# sequela defend: {report['model']}",
        "",
        f"Seeds {seeds} (n = {n}), device {report['device']}, {report['n_clean']} clean images for the defender.",
    ]
    if report["n_val"]:
        lines.append(
            f"Per seed, a stratified {report['val_share']:.0%} of them ({report['n_val']} images, drawn with "
            f"the seed) are the validation rows of the collapse check; the defenses train on the other "
            f"{report['n_train']}."
        )
    else:
        lines.append(
            f"No validation rows (--val-share 0): the defenses train on all {report['n_train']} images, "
            "and collapse is not checked."
        )
    if report["resized"]:
        lines.append(f"Resized to the model's input size: {', '.join(report['resized'])}.")
    models = report["models"]
    columns = [c for c in TABLE if any(c in f for f in models.values())]
    lines += [
        "",
        f"Mean ± sd over the n = {n} seeds." if n > 1 else "One seed.",
        "",
        "| model | " + " | ".join(columns) + " | n |",
        "|:--|" + "--:|" * (len(columns) + 1),
    ]
    for name, f in models.items():
        sd = report["sd"][name]
        cells = [cell(f.get(c), sd.get(c), n, 1 if c == "seconds" else 3) for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {n} |")
    lines += ["", "## Collapse", ""]
    if not report["collapse"]:
        lines.append("Not checked: there are no validation rows.")
    for name, c in report["collapse"].items():
        if c["collapsed"]:
            lines.append(
                f"WARNING: {name} collapsed (seeds {', '.join(map(str, c['seeds']))}): CA on the validation "
                f"rows {c['val_ca']:.3f} against {c['given_val_ca']:.3f} for the model as given "
                f"(mean over seeds; a fall of more than {report['collapse_drop']} counts)."
            )
    if report["collapse"] and not any(c["collapsed"] for c in report["collapse"].values()):
        lines.append(
            f"No defense's CA on the validation rows fell more than {report['collapse_drop']} below the given model's."
        )
    lines += [
        "",
        "## Settings",
        "",
        "| defense | rule | lr | schedule | epochs | steps | batch |",
        "|:--|:--|--:|:--|--:|--:|--:|",
    ]
    for name, s in report["settings"].items():
        cells = [per_seed(s[k]) for k in ("rule", "lr", "schedule", "epochs", "steps", "batch")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(
        f"\nSteps = epochs × ceil({report['n_train']} training rows / batch). Where seeds differ, a cell "
        f"gives each seed's value in seed order ({', '.join(map(str, report['seeds']))})."
    )
    lines += rule_lines(report)
    if "retune" in report:
        r = report["retune"]
        text = (
            f"P-ASR: each model retuned on the defender's {report['n_train']} training rows, its first "
            f"round({r['share']} × rows) (at least one) swapped for poisons of {r['poisons']} "
            f"({r['n_poisons']} given, not augmented); SGD lr {r['lr']}, momentum {r['momentum']}, weight "
            f"decay {r['weight_decay']}, batch {r['batch_size']}, {r['epochs']} epochs; ASR on the triggered "
            "images."
        )
        lines += ["", "## Retuning attack", "", text]
    if any(report["runs"][s]["curves"].get(n) for s in report["runs"] for n in report["settings"]):
        lines += ["", "## Curves", "", "![per-epoch CA and ASR, mean ± sd over seeds](curves.png)"]
    return "\n".join(lines) + "\n"


def per_seed(value) -> str:
    """A settings cell: one value, or each seed's joined by ' / ' where they differ."""
    if isinstance(value, list):
        return " / ".join(str(v) for v in value)
    return "" if value is None else str(value)


def rule_lines(report: dict) -> list[str]:
    """The validated rule's trials: each factor tried, per defense and seed, with its validation CA."""
    rule = report["lr_rule"]
    tried = {
        (name, seed): choice["tried"]
        for seed, run in report["runs"].items()
        for name, choice in run["lr_choice"].items()
        if choice["rule"] == "validated"
    }
    if not tried:
        return []
    factors = ", ".join(f"{f:g}" for f in rule["scales"])
    text = (
        f"Validated: each defense's learning rates times the largest factor of {factors} whose model keeps "
        f"CA on the validation rows within {rule['drop']} of the given model's; tried from the largest down. "
        "Validation CA of each factor tried:"
    )
    lines = [
        "",
        "## Learning-rate rule",
        "",
        text,
        "",
        "| defense | seed | " + " | ".join(f"x{f:g}" for f in rule["scales"]) + " | kept |",
        "|:--|--:|" + "--:|" * (len(rule["scales"]) + 1),
    ]
    for (name, seed), trials in tried.items():
        by = {t["scale"]: f"{t['val_ca']:.3f}" for t in trials}
        kept = f"x{trials[-1]['scale']:g}"
        lines.append(f"| {name} | {seed} | " + " | ".join(by.get(f, "") for f in rule["scales"]) + f" | {kept} |")
    return lines


def curve_figure(report: dict, path: Path) -> bool:
    """curves.png: per-epoch CA (the validation rows, else the test set) and ASR of each defense,
    mean ± sd over seeds. False where no defense recorded a curve."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    runs = report["runs"]
    curves = {n: [runs[s]["curves"][n] for s in runs if runs[s]["curves"].get(n)] for n in report["settings"]}
    curves = {n: c for n, c in curves.items() if c}
    if not curves:
        return False
    panels = [
        k
        for k in ("ca", "asr")
        if any(k in row and row[k] is not None for c in curves.values() for rows in c for row in rows)
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    ca_on = "validation rows" if report["n_val"] else "test"
    for ax, key in zip(axes[0], panels):
        for name, per_seed in curves.items():
            length = min(len(rows) for rows in per_seed)
            values = np.array([[row[key] for row in rows[:length]] for rows in per_seed], dtype=float)
            epochs = [row["epoch"] for row in per_seed[0][:length]]
            mean, sd = values.mean(0), values.std(0, ddof=1) if len(values) > 1 else np.zeros(length)
            ax.plot(epochs, mean, marker="o", markersize=3, label=name)
            ax.fill_between(epochs, mean - sd, mean + sd, alpha=0.2)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"CA ({ca_on})" if key == "ca" else "ASR (triggered)")
        ax.set_ylim(-0.02, 1.02)
        ax.legend()
    fig.suptitle(f"mean ± sd over {report['n']} seed{'s' if report['n'] > 1 else ''}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_report(report: dict, out: Path) -> None:
    """report.json (fractions to three decimals, as the pipeline's cells keep them), report.md and
    curves.png."""
    from sequela.pipeline.records import rounded

    out.mkdir(parents=True, exist_ok=True)
    curve_figure(report, out / "curves.png")
    (out / "report.json").write_text(json.dumps(rounded(report), indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
