"""Defense registry: name -> `run(ctx) -> extra figures`. See `base.DefenseContext`.

Post-training (the backdoored model + the defender's clean data): ft, sft, fp, nad, nc.
Training-time (the poisoned training set, retraining from scratch): abl, ac, spectral.
"""

from sequela.defenses import abl, ac, fp, nad, nc, spectral
from sequela.defenses.base import DefenseContext
from sequela.defenses.finetune import run_ft, run_sft

DEFENSES = {"ft": run_ft, "sft": run_sft, "fp": fp.run, "nad": nad.run, "nc": nc.run,
            "abl": abl.run, "ac": ac.run, "spectral": spectral.run}

__all__ = ["DEFENSES", "DefenseContext"]
