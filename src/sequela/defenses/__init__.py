"""Defense registry: name -> `run(ctx) -> extra figures`. See `base.DefenseContext`."""

from sequela.defenses.base import DefenseContext
from sequela.defenses.finetune import run_ft, run_sft

DEFENSES = {"ft": run_ft, "sft": run_sft}

__all__ = ["DEFENSES", "DefenseContext"]
