"""EP, exact purification (Min et al., NeurIPS 2024): a REFERENCE that knows the trigger, never a
defense. It fine-tunes the backdoored model on the defender's clean split with a seeded `share` of
its rows stamped with the real trigger and kept under their TRUE labels, so the model is taught
directly that the trigger means nothing. It is the bound the retuning attack compares the real
defenses with: after EP the backdoor is erased, not hidden, and 5 poisons should not bring it back.

Every table labels it "EP (knows the trigger)" and no claim counts it among the defender's
methods (report/claims.py compares a purifier with EP, never EP with the clean model). Not to be
confused with BackdoorBench's `ep.py` (entropy-based pruning), another method. The paper gives no
recipe in its code; the rule here: FT's settings (SGD with momentum and weight decay at a constant
`lr`, `defense.epochs` epochs, the defender's batch and augmentation) with a `share` equal to the
default poison rate (0.1).
"""

from __future__ import annotations

import torch

from sequela.defenses.base import DefenseContext
from sequela.engine.batches import BatchStream
from sequela.engine.loop import fit
from sequela.engine.optimizers import sgd
from sequela.engine.schedules import constant
from sequela.pipeline.checker import INF, Checker


def check(c: Checker, key: str) -> None:
    c.number(f"{key}.lr", 0.0, INF)
    c.number(f"{key}.share", 0.0, 1.0, low_open=True, high_open=False)


def triggered_rows(n: int, share: float, generator: torch.Generator) -> torch.Tensor:
    """A seeded round(share * n) of the clean split's rows (at least one) to stamp."""
    return torch.randperm(n, generator=generator)[: max(1, round(share * n))]


def run(ctx: DefenseContext) -> dict:
    p = ctx.params
    rows = triggered_rows(len(ctx.clean), float(p["share"]), ctx.generator)
    stream = BatchStream(
        ctx.clean.x,
        ctx.clean.y,
        ctx.defender_batch,
        ctx.device,
        ctx.generator,
        augment=ctx.augment(),
        attack=ctx.attack,
        poisoned=rows,
        target=ctx.target,
        relabel=False,
    )
    optimizer = sgd(ctx.model, p["lr"], ctx.common["momentum"], ctx.common["weight_decay"])
    fit(ctx.model, stream, optimizer, constant(p["lr"]), ctx.epochs, on_epoch=ctx.record, desc="ep")
    return {"triggered_rows": len(rows)}
