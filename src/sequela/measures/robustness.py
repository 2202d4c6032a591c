"""Adversarial robustness: accuracy under an L-inf PGD attack (Madry et al., 2018).

A removed backdoor may leave the model more (or less) fragile to ordinary adversarial examples;
this is a cheap third sequela. Images stay in [0, 1] pixel space throughout: the model normalises
its inputs itself, so eps and the step are in pixel units (8/255 is the usual CIFAR budget).

No single budget is chosen: every model is attacked at each budget of a fixed grid (params.yaml
`sequela.pgd.eps`, 2/255 to 16/255, the same for every dataset), each with step eps x
`step_fraction`, and the headline `pgd_acc` is the mean accuracy over the grid (the area under the
accuracy-vs-eps curve, on the grid's points). A budget where every model is at 0 or at its clean
accuracy then costs the comparison nothing, whatever the dataset.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sequela.datasets.splits import Split
from sequela.engine.device import autocast
from sequela.pipeline.checker import Checker, fail, is_number
from sequela.pipeline.progress import bar


def check(c: Checker, datasets: list[str] = ()) -> None:
    """`sequela.pgd`: the L-inf PGD attack's budget, in [0, 1] pixel units."""
    budgets = c.get("sequela.pgd.eps")
    if not isinstance(budgets, list) or not budgets or not all(is_number(e) and 0 <= e <= 1 for e in budgets):
        fail("sequela.pgd.eps", budgets, "a non-empty list of L-inf budgets in [0, 1] (pixel units)")
    c.number("sequela.pgd.step_fraction", 0.0, 1.0, high_open=False)
    c.integer("sequela.pgd.steps")
    c.integer("sequela.pgd.n")
    c.boolean("sequela.pgd.random_start")


def pgd(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    step: float,
    steps: int,
    random_start: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Untargeted PGD on float images `x` in [0, 1]: `steps` signed-gradient ascent steps of size
    `step` on the cross-entropy of the true label, each projected back onto the eps-ball around x
    and onto [0, 1]. Gradients are taken with respect to the input only; the weights are untouched.
    The model runs in eval mode (BatchNorm's running statistics, which a training-mode forward
    would also update) and is left in the mode it came in."""
    was_training = model.training
    model.eval()
    adv = x.clone()
    if random_start and eps > 0:
        noise = torch.rand(x.shape, generator=generator).to(x.device)
        adv = (adv + (2 * noise - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        with autocast(x.device):
            loss = F.cross_entropy(model(adv).float(), y)
        (grad,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() + step * grad.sign()
        adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1)
    model.train(was_training)
    return adv.detach()


def pgd_accuracy(
    model: torch.nn.Module,
    test: Split,
    eps: float,
    step: float,
    steps: int,
    n: int,
    seed: int,
    random_start: bool = True,
    batch_size: int = 256,
) -> float:
    """Top-1 accuracy under PGD on a seeded subset of `n` test images (all of them if fewer),
    evaluated in eval mode; the model is left in the mode it came in."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    if n < len(test):
        test = test.subset(torch.randperm(len(test), generator=generator)[:n].sort().values)
    was_training = model.training
    model.eval()
    correct = 0
    for start in bar(range(0, len(test), batch_size), f"pgd: eps {eps:.4f}"):
        x = test.x[start : start + batch_size].to(device).float().div_(255.0)
        y = test.y[start : start + batch_size].to(device)
        adv = pgd(model, x, y, eps, step, steps, random_start, generator)
        with torch.no_grad(), autocast(device):
            correct += (model(adv).argmax(1) == y).sum().item()
    model.train(was_training)
    return correct / len(test)


def pgd_figures(model: torch.nn.Module, test: Split, settings: dict, seed: int) -> dict:
    """`pgd_acc`, the mean accuracy over the budgets of `settings` (params.yaml `sequela.pgd`), and
    `pgd_acc_by_eps`, each budget's accuracy; the same seeded test images at every budget."""
    by_eps = {
        f"{eps:g}": pgd_accuracy(
            model,
            test,
            eps,
            eps * settings["step_fraction"],
            settings["steps"],
            settings["n"],
            seed,
            settings["random_start"],
        )
        for eps in settings["eps"]
    }
    return {"pgd_acc": sum(by_eps.values()) / len(by_eps), "pgd_acc_by_eps": by_eps}


def measure_of(cell, settings: dict):
    """PGD accuracy of one model on the cell's test split, the same in every paradigm (measures/registry.py)."""

    def measure(model: torch.nn.Module, removed: torch.Tensor | None = None) -> dict:
        return pgd_figures(model, cell.ds.test, settings["pgd"], cell.seed)

    return measure
