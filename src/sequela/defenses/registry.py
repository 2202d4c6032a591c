"""The defense registry: name -> (run, check of its params section `defense.<name>`).

Post-training (the backdoored model + the defender's clean data): ft, sft, fp, nad, nc, fst, ftsam, sau,
btidbf, pam.
Training-time (`needs_poisoned_set`: the poisoned training set, retraining from scratch): abl, ac, spectral.
Reference (`knows_trigger`: stamps the real trigger, never a defense): ep.
Adding a defense: its module with `run(ctx) -> dict` and `check(c, key)`, its line below, its
params section.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sequela.defenses import abl, ac, btidbf, ep, finetune, fp, fst, ftsam, nad, nc, pam, sau, spectral
from sequela.defenses.base import DefenseContext
from sequela.pipeline.checker import INF, Checker


@dataclass(frozen=True)
class Defense:
    run: Callable[[DefenseContext], dict]  # changes ctx.model; returns extra figures
    check: Callable[[Checker, str], None]  # checks its params section, given its key
    needs_poisoned_set: bool = False  # training-time: retrains on the poisoned training set
    knows_trigger: bool = False  # a reference (EP), not a defense: it stamps the real trigger


DEFENSES: dict[str, Defense] = {
    "ft": Defense(finetune.run_ft, finetune.check_ft),
    "sft": Defense(finetune.run_sft, finetune.check_sft),
    "fp": Defense(fp.run, fp.check),
    "nad": Defense(nad.run, nad.check),
    "nc": Defense(nc.run, nc.check),
    "fst": Defense(fst.run, fst.check),
    "ftsam": Defense(ftsam.run, ftsam.check),
    "sau": Defense(sau.run, sau.check),
    "btidbf": Defense(btidbf.run, btidbf.check),
    "pam": Defense(pam.run, pam.check),
    "abl": Defense(abl.run, abl.check, needs_poisoned_set=True),
    "ac": Defense(ac.run, ac.check, needs_poisoned_set=True),
    "spectral": Defense(spectral.run, spectral.check, needs_poisoned_set=True),
    "ep": Defense(ep.run, ep.check, knows_trigger=True),
}


# What a defender holding only a model and clean data can run (sequela defend).
CLEAN_DATA_ONLY = tuple(name for name, d in DEFENSES.items() if not (d.needs_poisoned_set or d.knows_trigger))


def check_defenses(c: Checker) -> None:
    """grid.defenses against the registry, the shared settings, and each listed defense's section."""
    c.names("grid.defenses", tuple(DEFENSES))
    check_shared(c)
    for name in c.get("grid.defenses"):
        DEFENSES[name].check(c, f"defense.{name}")


def check_shared(c: Checker) -> None:
    """The settings every fine-tuning defense shares (`defense.epochs`, the clean share and the
    batch are checked with the datasets they apply to, in sequela.pipeline.config)."""
    c.number("defense.momentum", 0.0, 1.0, low_open=False)
    c.number("defense.weight_decay", 0.0, INF, low_open=False)
