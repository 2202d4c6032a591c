"""Learning-rate schedules as plain functions of the global optimisation step.

Each `make_*` returns `lr_at(step) -> float`; the engine sets the optimiser's rate from it before
every step, so a schedule is exactly what its formula says and can be plotted without training.
"""

from __future__ import annotations

import math
from typing import Callable

Schedule = Callable[[int], float]


def constant(lr: float) -> Schedule:
    return lambda step: lr


def cosine(lr: float, total_steps: int) -> Schedule:
    """Cosine annealing from `lr` to 0 over `total_steps`."""
    return lambda step: 0.5 * lr * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))


def super_fine_tuning(
    base_lr: float, max_lr1: float, max_lr2: float, total_steps: int, cycle_steps: int, phase1_fraction: float
) -> Schedule:
    """SFT's two-phase triangular schedule (Sha et al., 2022).

    Within each cycle of `cycle_steps` steps the rate rises linearly from `base_lr` to a peak over
    the first half and falls back over the second. The peak is `max_lr1` during phase 1 (the first
    `phase1_fraction` of all steps), which pushes the weights far from the backdoored optimum, and
    `max_lr2` afterwards, which settles them into a clean one."""
    phase1_steps = round(phase1_fraction * total_steps)
    half = cycle_steps / 2

    def lr_at(step: int) -> float:
        peak = max_lr1 if step < phase1_steps else max_lr2
        p = step % cycle_steps
        rise = p / half if p < half else (cycle_steps - p) / half
        return base_lr + (peak - base_lr) * rise

    return lr_at


def sft_from_params(p: dict, epochs: int, steps_per_epoch: int) -> Schedule:
    """SFT with the cycle length `cycle_steps` in optimisation steps (params.yaml defense.sft), so
    the schedule's shape does not silently change with the defender's batch size or data size."""
    return super_fine_tuning(
        p["base_lr"], p["max_lr1"], p["max_lr2"], epochs * steps_per_epoch, p["cycle_steps"], p["phase1_fraction"]
    )
