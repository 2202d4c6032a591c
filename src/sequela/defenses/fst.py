"""FST, feature shift tuning (Min et al., NeurIPS 2023): fine-tune the whole model on the clean
data after re-initialising its linear head, with a penalty alpha * <W, W_0> that pushes the new
head's weights away from the backdoored head's W_0, and the new head's norm held at ||W_0|| after
every step (else the penalty would be met by shrinking W). Pushing the head away forces the
features to shift, which is what disentangles them from the trigger at low poison rates.

As the official code: the head re-initialised uniformly in +-1/sqrt(fan_in) (weight and bias), SGD
with momentum and no weight decay, a cosine schedule from `lr`, alpha 0.2 (its default). One
departure: the cosine is annealed per step, not per epoch (the schedules here are per step).
Epochs are `defense.epochs`, as for FT and SFT.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sequela.defenses.base import DefenseContext
from sequela.engine.loop import fit
from sequela.engine.optimizers import sgd
from sequela.engine.schedules import cosine
from sequela.pipeline.checker import INF, Checker


class NormHeldSGD:
    """SGD whose step is followed by rescaling `weight` to the Frobenius norm `norm`."""

    def __init__(self, optimizer: torch.optim.SGD, weight: torch.Tensor, norm: torch.Tensor):
        self.optimizer, self.weight, self.norm = optimizer, weight, norm
        self.param_groups = optimizer.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        self.optimizer.step()
        with torch.no_grad():
            self.weight.mul_(self.norm / self.weight.norm())


def last_linear(head: nn.Module) -> nn.Linear:
    """The layer that maps features to classes: the head itself, or an MLP head's last layer."""
    return head if isinstance(head, nn.Linear) else [m for m in head.modules() if isinstance(m, nn.Linear)][-1]


def check(c: Checker, key: str) -> None:
    c.number(f"{key}.lr", 0.0, INF)
    c.number(f"{key}.alpha", 0.0, INF, low_open=False)


def run(ctx: DefenseContext) -> dict:
    model, p = ctx.model, ctx.params
    head = last_linear(model.fc)
    original = head.weight.detach().clone()
    norm = original.norm()
    bound = 1.0 / math.sqrt(head.weight.shape[1])
    with torch.no_grad():  # drawn from the defense's own generator, on the CPU, then moved
        for param in (head.weight, head.bias):
            param.copy_(torch.empty(param.shape).uniform_(-bound, bound, generator=ctx.generator))
    alpha = float(p["alpha"])

    def loss_fn(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(m(x), y) + alpha * (head.weight * original).sum()

    stream = ctx.clean_stream()
    optimizer = NormHeldSGD(sgd(model, p["lr"], ctx.common["momentum"], weight_decay=0.0), head.weight, norm)
    fit(
        model,
        stream,
        optimizer,
        cosine(p["lr"], ctx.epochs * len(stream)),
        ctx.epochs,
        on_epoch=ctx.record,
        loss_fn=loss_fn,
        desc="fst",
    )
    cosine_to_original = F.cosine_similarity(head.weight.detach().flatten(), original.flatten(), dim=0).item()
    return {"head_cosine_to_original": cosine_to_original}
