"""Fine-tuning (FT) and super-fine-tuning (SFT): the whole model, clean data, cross-entropy, SGD.

They differ only in the learning-rate schedule: FT holds `defense.ft.lr` constant; SFT follows the
two-phase triangular schedule of `schedules.super_fine_tuning`.
"""

from __future__ import annotations

from sequela.defenses.base import DefenseContext
from sequela.engine import fit, sgd
from sequela.schedules import Schedule, constant, sft_from_params


def fine_tune(ctx: DefenseContext, schedule: Schedule, desc: str) -> None:
    stream = ctx.clean_stream()
    optimizer = sgd(ctx.model, schedule(0), ctx.common["momentum"], ctx.common["weight_decay"])
    fit(ctx.model, stream, optimizer, schedule, ctx.epochs, on_epoch=ctx.record, desc=desc)


def run_ft(ctx: DefenseContext) -> dict:
    fine_tune(ctx, constant(ctx.params["lr"]), "ft")
    return {}


def run_sft(ctx: DefenseContext) -> dict:
    steps_per_epoch = len(ctx.clean_stream())
    fine_tune(ctx, sft_from_params(ctx.params, ctx.epochs, steps_per_epoch), "sft")
    return {"steps_per_epoch": steps_per_epoch, "cycle_steps": ctx.params["cycle_steps"]}
