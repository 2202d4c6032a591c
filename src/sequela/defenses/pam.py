"""PAM, path-aware minimisation (Min et al., NeurIPS 2024, "superficial safety").

Purified models often sit next to the backdoored one on a low-loss path, so a few poisons bring the
backdoor back. PAM unlearns on BTI-DBF's data (each clean batch with a share of its rows replaced
by the generator's inverted images, under their true labels) but takes every gradient at a point
moved rho along the straight line toward the backdoored weights, w + rho (w0 - w) / ||w0 - w||,
and applies it at w: it seeks weights whose neighbourhood toward the backdoor is also low-loss,
which pushes the model off that path.

As the official code (AISafety-HKUST/stable_backdoor_purification, fine_tune/BTIDBF: `btidbfu.py`,
`sam.py`, `defense.sh`): the inversion of BTI-DBF (btidbf.py) redone each round, share 0.2
(int(0.2 B) + 1 inverted rows per batch), cross-entropy only, SGD lr 0.01 with momentum 0.1 and no
weight decay, rho 0.5. Departures: `rounds` inversion + unlearning rounds, params.yaml's
defense.pam.rounds (2), where defense.sh runs 3 (--nround 3): every round refits the mask and the
generator (50 of the defense's epochs, its main cost); the unlearning epochs are `defense.epochs`
split over the rounds (FT's rule; the reference runs 30 per round).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sequela.defenses import btidbf
from sequela.defenses.base import DefenseContext
from sequela.engine.device import autocast
from sequela.engine.optimizers import sgd
from sequela.pipeline.checker import INF, Checker


def check(c: Checker, key: str) -> None:
    btidbf.check(c, key)
    c.number(f"{key}.rho", 0.0, INF)
    c.number(f"{key}.momentum", 0.0, 1.0, low_open=False)


def toward(params: list[torch.Tensor], anchor: list[torch.Tensor], rho: float) -> list[torch.Tensor]:
    """Move `params` rho along the unit direction to `anchor` (in place); returns the steps to undo.
    Where they coincide (the first step) nothing moves."""
    diffs = [a - p.detach() for p, a in zip(params, anchor)]
    norm = torch.norm(torch.stack([d.norm() for d in diffs]))
    steps = [d * (rho / norm) if norm > 0 else torch.zeros_like(d) for d in diffs]
    with torch.no_grad():
        for p, step in zip(params, steps):
            p.add_(step)
    return steps


def run(ctx: DefenseContext) -> dict:
    p, model = ctx.params, ctx.model
    anchor = [q.detach().clone() for q in model.parameters()]  # the backdoored weights
    params, rho, lr = list(model.parameters()), float(p["rho"]), float(p["lr"])
    opt = sgd(model, lr, float(p["momentum"]), weight_decay=0.0)

    def step(x: torch.Tensor, mixed: torch.Tensor, y: torch.Tensor) -> None:
        steps = toward(params, anchor, rho)
        opt.zero_grad(set_to_none=True)
        with autocast(ctx.device):
            loss = F.cross_entropy(model(mixed).float(), y)
        loss.backward()  # the gradient on the path to the backdoor ...
        with torch.no_grad():
            for q, moved in zip(params, steps):
                q.sub_(moved)  # ... applied at the weights
        opt.step()

    return btidbf.unlearn_in_rounds(ctx, step, lr, "pam")
