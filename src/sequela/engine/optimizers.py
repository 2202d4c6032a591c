"""SGD and Adam, written out with the same updates as torch.optim's.

Why not torch.optim: its first step imports torch._dynamo. With the locked torch (2.15) that costs
0.9-1.0 s of CPU per process for SGD and for Adam, against under 0.01 s for these (a fresh process,
one step of a linear layer, on a 2-core AMD EPYC); a digits stage trains in about as long. Every
stage is its own process, so the cost would be paid hundreds of times in one grid.
"""

from __future__ import annotations

import torch


class SGD:
    """SGD with momentum and L2 weight decay, the same update as torch.optim.SGD (dampening 0,
    no Nesterov): d = g + wd * w; b = momentum * b + d (b = d at the first step); w -= lr * b.
    Exposes `param_groups` so that `fit` sets the learning rate as it would torch.optim's."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4):
        self.param_groups = [
            {
                "params": [p for p in params if p.requires_grad],
                "lr": lr,
                "momentum": momentum,
                "weight_decay": weight_decay,
            }
        ]
        self.buffers: dict[torch.nn.Parameter, torch.Tensor] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad
                if group["momentum"]:
                    buf = self.buffers.get(p)
                    if buf is None:
                        buf = self.buffers[p] = d.clone()
                    else:
                        buf.mul_(group["momentum"]).add_(d)
                    d = buf
                p.add_(d, alpha=-group["lr"])


class Adam:
    """Adam without weight decay, the same update as torch.optim.Adam: m = b1 m + (1 - b1) g,
    v = b2 v + (1 - b2) g^2, w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
    Every defend stage would pay torch.optim's import cost for Neural Cleanse's trigger search."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.eps, self.t = lr, betas, eps, 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        self.t += 1
        step_size = self.lr / (1 - b1**self.t)
        correction2 = (1 - b2**self.t) ** 0.5
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            m.lerp_(p.grad, 1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            p.addcdiv_(m, (v.sqrt() / correction2).add_(self.eps), value=-step_size)


def sgd(model: torch.nn.Module, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4) -> SGD:
    return SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
