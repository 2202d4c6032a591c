"""FT-SAM (Zhu et al., ICCV 2023): fine-tuning on the clean data with adaptive sharpness-aware
minimisation (ASAM, Kwon et al., 2021). Each step first climbs to the worst point of a
neighbourhood whose size scales with the weights, eps = rho * T^2 g / ||T g|| with T = |w| + eta on
the weight tensors (1 elsewhere), takes the gradient there, and applies it at the original weights.
The backdoor sits in a sharp region of the clean loss; the flat minimum the step seeks leaves it.

As BackdoorBench's FT-SAM: SGD with momentum and weight decay, a cosine schedule from lr 0.01,
label smoothing where its per-dataset config sets it, rho by the paper's per-dataset value (2 for
CIFAR-10, 8 for GTSRB); params.yaml keeps CIFAR-10's for every set the paper did not run, and a
GTSRB study sets 8 (docs/protocol.md). Epochs are `defense.epochs`, as for FT and SFT.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sequela.checker import INF, Checker
from sequela.defenses.base import DefenseContext
from sequela.engine import autocast, sgd
from sequela.progress import bar
from sequela.schedules import cosine


def ascent(model: torch.nn.Module, rho: float, eta: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Move every parameter to w + eps (ASAM's ascent step, from the gradients in .grad); returns
    (parameter, eps) pairs to undo it."""
    scaled, pairs = [], []
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        t = p.detach().abs() + eta if name.endswith("weight") else None
        scaled.append((name, p, t, p.grad * t if t is not None else p.grad))
    norm = torch.norm(torch.stack([g.norm() for *_, g in scaled])) + 1e-12
    with torch.no_grad():
        for _, p, t, g in scaled:
            eps = (g * t if t is not None else g) * (rho / norm)
            p.add_(eps)
            pairs.append((p, eps))
    return pairs


def check(c: Checker, key: str) -> None:
    c.number(f"{key}.lr", 0.0, INF)
    c.number(f"{key}.rho", 0.0, INF)
    c.number(f"{key}.eta", 0.0, INF, low_open=False)
    c.number(f"{key}.label_smoothing", 0.0, 1.0, low_open=False, high_open=True)


def run(ctx: DefenseContext) -> dict:
    model, p = ctx.model, ctx.params
    stream = ctx.clean_stream()
    optimizer = sgd(model, p["lr"], ctx.common["momentum"], ctx.common["weight_decay"])
    schedule = cosine(p["lr"], ctx.epochs * len(stream))
    smoothing, rho, eta = float(p["label_smoothing"]), float(p["rho"]), float(p["eta"])

    def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with autocast(ctx.device):
            return F.cross_entropy(model(x).float(), y, label_smoothing=smoothing)

    step = 0
    shown = bar(ctx.epochs * len(stream), "ftsam")
    for epoch in range(1, ctx.epochs + 1):
        model.train()
        lrs = []
        for x, y in stream:
            lr = schedule(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss_of(x, y).backward()
            moved = ascent(model, rho, eta)
            optimizer.zero_grad(set_to_none=True)
            loss_of(x, y).backward()      # the gradient at the worst point of the neighbourhood
            with torch.no_grad():
                for param, eps in moved:
                    param.sub_(eps)           # ... applied at the original weights
            optimizer.step()
            lrs.append(lr)
            step += 1
            shown.update()
        ctx.record(epoch, sum(lrs) / len(lrs))
    shown.close()
    return {}
