"""SBL, sequential backdoor learning (Pham et al., ECCV 2024): an attack built to survive fine-tuning.

The trigger is BadNets' square; what differs is how the attacker trains the victim (training/sbl.py):
first the backdoor task (the training split less a clean share) with sharpness-aware minimisation,
then continual learning on the clean share with an EWC anchor to the first task's weights, at a
lower rate. The backdoor ends in a flat region of the clean loss that later fine-tuning on clean
data does not leave.

Unlike BadNets, whose reference poisons a fixed set of rows, SBL's official runs (run_cifar.sh,
run_gtsrb.sh: `--is_dat`) poison the backdoor task afresh in every batch, each row with probability
poisoning_rate, target class included: schedule "per_batch" (attacks/base.py), with no cross rows.
"""

from __future__ import annotations

from sequela.attacks.blend import BadNets


class SBL(BadNets):
    name = "sbl"
    sequential = True  # the train stage trains the victim with sbl.train_sbl
    schedule = "per_batch"

    @classmethod
    def check_params(cls, c, key, side, smallest):
        super().check_params(c, key, side, smallest)
        c.number(f"{key}.rho", 0.0, float("inf"))
        c.number(f"{key}.clean_share", 0.0, 1.0)
        c.number(f"{key}.task2_lr_factor", 0.0, float("inf"))
        c.number(f"{key}.task2_epochs_factor", 0.0, float("inf"))
        c.number(f"{key}.ewc_lambda", 0.0, float("inf"), low_open=False)
