"""Fine-tuning (FT) and super-fine-tuning (SFT): the whole model, clean data, cross-entropy, SGD.

They differ only in the learning-rate schedule: FT holds `defense.ft.lr` constant; SFT follows the
two-phase triangular schedule of `schedules.super_fine_tuning`.
"""

from __future__ import annotations

from sequela.defenses.base import DefenseContext
from sequela.engine.loop import fit
from sequela.engine.optimizers import sgd
from sequela.engine.schedules import Schedule, constant, sft_from_params
from sequela.pipeline.checker import INF, Checker, fail, is_int


def fine_tune(ctx: DefenseContext, schedule: Schedule, desc: str) -> None:
    stream = ctx.clean_stream()
    optimizer = sgd(ctx.model, schedule(0), ctx.common["momentum"], ctx.common["weight_decay"])
    fit(ctx.model, stream, optimizer, schedule, ctx.epochs, on_epoch=ctx.record, desc=desc)


def check_ft(c: Checker, key: str) -> None:
    c.number(f"{key}.lr", 0.0, INF)


def check_sft(c: Checker, key: str) -> None:
    for name in ("base_lr", "max_lr1", "max_lr2"):
        c.number(f"{key}.{name}", 0.0, INF)
    c.number(f"{key}.phase1_fraction", 0.0, 1.0, low_open=False, high_open=False)
    cycle = c.get(f"{key}.cycle_steps")
    if not is_int(cycle) or cycle < 2:
        fail(f"{key}.cycle_steps", cycle, "an integer >= 2 (optimisation steps per triangular cycle)")


def run_ft(ctx: DefenseContext) -> dict:
    fine_tune(ctx, constant(ctx.params["lr"]), "ft")
    return {}


def run_sft(ctx: DefenseContext) -> dict:
    steps_per_epoch = len(ctx.clean_stream())
    fine_tune(ctx, sft_from_params(ctx.params, ctx.epochs, steps_per_epoch), "sft")
    return {"steps_per_epoch": steps_per_epoch, "cycle_steps": ctx.params["cycle_steps"]}


# The fine-tuning defenses by name, for the parts that run only these (the paradigms, the sweeps),
# so that they do not import every defense of the registry.
FINE_TUNING = {"ft": run_ft, "sft": run_sft}
