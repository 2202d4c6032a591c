"""How `sequela defend` sets a defense's learning rate on a model trained elsewhere.

The defenses' settings in params.yaml (FT at 0.01, SFT's cycles peaking at 0.1, ...) are the paper's
and its references', made for models trained with those rates. A model from elsewhere may have been
trained at a tenth of them, and a small defender's set gives few steps to recover from a too-large
rate: SFT's fixed schedule can leave such a model at chance accuracy. Two rules, written down before
any test figure of a model from elsewhere was seen:

- `fixed`: the settings as params.yaml gives them (the paper's schedule; the grid's cells use it).
- `validated` (the default): each learning rate a defense has (`LR_KEYS`) is multiplied by one factor,
  the largest of `SCALES` whose defended model keeps its CA on the defender's validation rows within
  `own_report.COLLAPSE_DROP` (0.05) of the given model's on the same rows. Factors are tried from the
  largest down, each run with the seed's own draws, and the first that keeps CA is kept; where none
  does, the smallest is kept and the report flags the collapse. Largest, because the large rate is
  what removes a backdoor (SFT's first phase); within the margin, because a defense that buys its
  ASR with the model's accuracy has not defended it. The validation rows are the defender's own
  clean data (cli.defend.val_rows): no test image and no trigger is read.

A defense's seconds under `validated` are the sum over the factors it tried: the rule's real cost.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

RULES = ("validated", "fixed")
SCALES = (1.0, 0.3, 0.1, 0.03, 0.01)

# The keys of each defense's `defense.<name>` block that are learning rates of the model's weights.
LR_KEYS = {
    "ft": ("lr",),
    "sft": ("base_lr", "max_lr1", "max_lr2"),
    "fp": ("lr",),
    "nad": ("lr",),
    "nc": ("lr_unlearn",),
    "fst": ("lr",),
    "ftsam": ("lr",),
    "sau": ("lr",),
    "btidbf": ("lr",),
    "pam": ("lr",),
}


@dataclass(frozen=True)
class Rule:
    name: str  # one of RULES
    scales: tuple[float, ...]  # tried from the first (largest) on
    drop: float  # the largest fall of validation CA a kept factor allows


def parse_scales(text: str) -> tuple[float, ...]:
    """--lr-scales: positive, distinct, from the largest down. Raises ValueError with the reason."""
    try:
        scales = tuple(float(s) for s in text.split(","))
    except ValueError:
        raise ValueError("numbers, comma-separated") from None
    if not scales or min(scales) <= 0 or list(scales) != sorted(set(scales), reverse=True):
        raise ValueError("positive, distinct factors from the largest down (1,0.3,0.1,0.03,0.01)")
    return scales


def scaled_settings(settings: dict, name: str, scale: float) -> dict:
    """params.yaml's `defense` section with defense `name`'s learning rates (and those of its
    per-dataset entries) multiplied by `scale`; every other value as it was."""
    block = dict(settings[name])
    for key in LR_KEYS.get(name, ()):
        if key in block:
            block[key] = block[key] * scale
    if block.get("per_dataset"):
        block["per_dataset"] = {
            d: {k: v * scale if k in LR_KEYS.get(name, ()) else v for k, v in entry.items()}
            for d, entry in block["per_dataset"].items()
        }
    return {**settings, name: block}


def applies(rule: Rule, name: str) -> bool:
    return rule.name == "validated" and name in LR_KEYS


def defend_with(rule: Rule, name: str, cell, run, val_accuracy, given_val_ca: float):
    """Defense `name` on `cell` under `rule`: (outcome, choice). `run(cell)` runs the defense and
    returns its Outcome; `val_accuracy(model)` is CA on the validation rows. `choice` records the
    factor kept and each factor tried with its validation CA and seconds."""
    if not applies(rule, name):
        outcome = run(cell)
        return outcome, {"rule": "fixed", "scale": 1.0, "tried": []}
    tried, seconds = [], 0.0
    for scale in rule.scales:
        outcome = run(dataclasses.replace(cell, settings=scaled_settings(cell.settings, name, scale)))
        val_ca = val_accuracy(outcome.model)
        seconds += outcome.figures["seconds"]
        tried.append({"scale": scale, "val_ca": val_ca, "seconds": outcome.figures["seconds"]})
        if given_val_ca - val_ca <= rule.drop:
            break
    outcome.figures["seconds"] = seconds
    return outcome, {"rule": "validated", "scale": scale, "tried": tried}
