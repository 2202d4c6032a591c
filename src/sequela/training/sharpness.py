"""The ascent step of sharpness-aware minimisation, shared by FT-SAM (a defense) and SBL (an attack).

SAM (Foret et al., 2021) takes each step's gradient at the worst point of a rho-ball around the
weights, eps = rho * g / ||g||; ASAM (Kwon et al., 2021) scales that ball by the weights,
eps = rho * T^2 g / ||T g|| with T = |w| + eta on weight tensors (1 elsewhere).
"""

from __future__ import annotations

from typing import Callable

import torch

from sequela.pipeline.progress import bar


def ascent(
    model: torch.nn.Module, rho: float, eta: float = 0.0, adaptive: bool = True
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Move every parameter with a gradient to w + eps (from the gradients in .grad); returns the
    (parameter, eps) pairs that `descend_back` undoes."""
    scaled, pairs = [], []
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        t = p.detach().abs() + eta if adaptive and name.endswith("weight") else None
        scaled.append((p, t, p.grad * t if t is not None else p.grad))
    norm = torch.norm(torch.stack([g.norm() for *_, g in scaled])) + 1e-12
    with torch.no_grad():
        for p, t, g in scaled:
            eps = (g * t if t is not None else g) * (rho / norm)
            p.add_(eps)
            pairs.append((p, eps))
    return pairs


def descend_back(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    with torch.no_grad():
        for param, eps in pairs:
            param.sub_(eps)


def sam_fit(
    model: torch.nn.Module,
    stream,
    optimizer,
    schedule,
    epochs: int,
    loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    rho: float,
    eta: float = 0.0,
    adaptive: bool = True,
    on_epoch: Callable[[int, float], None] | None = None,
    desc: str = "sam",
    first_epoch: int = 1,
    second_pass_stats: bool = True,
) -> None:
    """`epochs` passes over `stream`, each step's gradient taken at the ascent point and applied at
    the weights. With `second_pass_stats=False`, BatchNorm's running statistics are updated by the
    first pass only (SBL's reference: the ascent point's batch statistics are not the model's)."""
    norms = (
        []
        if second_pass_stats
        else [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    )
    step, shown = 0, bar(epochs * len(stream), desc)
    for epoch in range(first_epoch, first_epoch + epochs):
        model.train()
        lrs = []
        for x, y in stream:
            lr = schedule(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss_of(x, y).backward()
            moved = ascent(model, rho, eta, adaptive)
            optimizer.zero_grad(set_to_none=True)
            momenta = [m.momentum for m in norms]
            for m in norms:
                m.momentum = 0.0  # running = (1 - 0) * running: unchanged by the second pass
            loss_of(x, y).backward()  # the gradient at the worst point of the neighbourhood ...
            for m, momentum in zip(norms, momenta):
                m.momentum = momentum
            descend_back(moved)  # ... applied at the original weights
            optimizer.step()
            lrs.append(lr)
            step += 1
            shown.update()
        if on_epoch is not None:
            on_epoch(epoch, sum(lrs) / len(lrs))
    shown.close()
