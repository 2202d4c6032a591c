"""Neural attention distillation (Li et al., 2021): a post-training defense.

A teacher, a copy of the backdoored model fine-tuned on clean data for `te_epochs`, has partly
forgotten the trigger. The backdoored model (the student) is then trained on clean data for
`defense.epochs` epochs with cross-entropy plus, for each distilled stage, beta times the distance
between student and teacher attention maps. An attention map is the channel mean of |a|^p,
flattened and L2-normalised; the distance is the mean squared difference (see `attention_distance`).
`betas` apply to the last len(betas) stages of the model (the earlier betas are dropped when the
model has fewer stages), so the same settings serve the 2-stage small CNN and the 4-stage ResNet-18.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from sequela.defenses.base import DefenseContext
from sequela.engine.loop import fit
from sequela.engine.optimizers import sgd
from sequela.engine.schedules import constant
from sequela.pipeline.checker import INF, Checker, fail, is_number


def attention(a: torch.Tensor, p: float) -> torch.Tensor:
    return F.normalize(a.abs().pow(p).mean(1).flatten(1), dim=1)


def attention_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared L2 distance between the normalised maps divided by their size (the mean over map
    elements), averaged over the batch: the scale the betas 500 / 1000 / 1000 were set for.
    The plain L2 norm of the paper's equation is ~sqrt(H*W) / distance times larger and, with
    those betas, swamps the cross-entropy (clean accuracy collapses in the first epoch)."""
    return (a - b).pow(2).mean()


def distillation_loss(teacher: torch.nn.Module, betas: list[float], p: float):
    def loss_fn(model, x, y):
        outs = model.stage_outputs(x)
        # The classifier's own head on the last stage: forward() is fc(pool(last stage)).
        logits = model.fc(model.pool(outs[-1]).flatten(1))
        loss = F.cross_entropy(logits, y)
        with torch.no_grad():
            targets = teacher.stage_outputs(x)
        # Pair the last betas with the last stages, whichever list is longer.
        k = min(len(betas), len(outs))
        for beta, s, t in zip(betas[len(betas) - k :], outs[len(outs) - k :], targets[len(targets) - k :]):
            loss = loss + beta * attention_distance(attention(s.float(), p), attention(t.float(), p))
        return loss

    return loss_fn


def check(c: Checker, key: str) -> None:
    c.integer(f"{key}.te_epochs")
    c.number(f"{key}.lr", 0.0, INF)
    c.number(f"{key}.p", 0.0, INF)
    betas = c.get(f"{key}.betas")
    if not isinstance(betas, list) or not betas or not all(is_number(b) and 0 <= b < INF for b in betas):
        fail(f"{key}.betas", betas, "a non-empty list of non-negative numbers (one per distilled stage)")


def run(ctx: DefenseContext) -> dict:
    p = ctx.params
    # The teacher is fine-tuned like FT; it is not the defended model, so its epochs are not recorded.
    teacher = copy.deepcopy(ctx.model)
    optimizer = sgd(teacher, p["lr"], ctx.common["momentum"], ctx.common["weight_decay"])
    fit(teacher, ctx.clean_stream(), optimizer, constant(p["lr"]), p["te_epochs"], desc="nad teacher")
    teacher.eval()
    teacher.requires_grad_(False)

    optimizer = sgd(ctx.model, p["lr"], ctx.common["momentum"], ctx.common["weight_decay"])
    fit(
        ctx.model,
        ctx.clean_stream(),
        optimizer,
        constant(p["lr"]),
        ctx.epochs,
        on_epoch=ctx.record,
        loss_fn=distillation_loss(teacher, list(p["betas"]), p["p"]),
        desc="nad student",
    )
    return {"teacher_epochs": p["te_epochs"]}
