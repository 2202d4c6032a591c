"""SAU, shared adversarial unlearning (Wei et al., NeurIPS 2023).

A backdoor is a shortcut that many adversarial perturbations also find. SAU searches, for each
clean batch, a perturbation that fools both the model being purified and the frozen backdoored
model in the same way (a shared adversarial example), then trains the model to classify the clean
images and to stop giving the backdoored model's answer on the shared ones.

As BackdoorBench's implementation (the authors' code) and its per-dataset configs, which are the
same for CIFAR-10, CIFAR-100 and GTSRB:
- inner: L-inf PGD in [0, 1] pixel space, eps 0.2, step 0.2 (signed), 5 steps, starting at +eps
  everywhere, no clip to [0, 1]; each step descends beta1 * L_adv + beta2 * L_js, where L_adv is
  minus the cross-entropy of each model on the rows it does not yet misclassify (relative to its own
  clean prediction) and L_js the Jensen-Shannon divergence of the two models' outputs on the rows
  not yet shared; beta1 0.01, beta2 1; it stops once every row is shared;
- outer: lambda1 * CE(x) + lambda2 * CE(x + delta) + lambda3 * L_sh, (1, 0, 1), where L_sh is
  -log(1 - p(backdoored model's label | x + delta)) on the rows that fool the backdoored model;
- Adam at a constant 1e-4, no weight decay, the model kept in eval mode (BatchNorm frozen), the
  clean data without augmentation.
Departure: epochs are `defense.epochs` and the batch the defender's, as for FT and SFT (the config's
100 rounds of batch 256 on 2,500 CIFAR-10 images are scaled by the same rule). Like every training
loop here, the forward passes run under bf16 autocast where the recipe asks for it (CUDA,
`cpu_bf16`), with the logits taken to float32 before every loss, softmax and argmax.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from sequela.defenses.base import DefenseContext
from sequela.engine.batches import BatchStream
from sequela.engine.device import autocast
from sequela.engine.optimizers import Adam
from sequela.pipeline.checker import INF, Checker
from sequela.pipeline.progress import bar


def check(c: Checker, key: str) -> None:
    for name in ("lr", "eps", "step"):
        c.number(f"{key}.{name}", 0.0, INF)
    c.integer(f"{key}.steps")
    for name in ("beta1", "beta2", "lambda1", "lambda2", "lambda3"):
        c.number(f"{key}.{name}", 0.0, INF, low_open=False)


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Per row: JS(p, q) of two probability rows."""
    m = (p + q) / 2
    kl = lambda a: (a * (a.clamp_min(1e-12).log() - m.clamp_min(1e-12).log())).sum(1)  # noqa: E731
    return (kl(p) + kl(q)) / 2


def shared_perturbation(
    model, backdoored, x: torch.Tensor, y: torch.Tensor, p: dict, clean_pred0: torch.Tensor | None = None
) -> torch.Tensor:
    """The inner maximisation: delta (||delta||_inf <= eps) whose x + delta both models misclassify
    with the same label, by signed steps on beta1 * L_adv + beta2 * L_js. `clean_pred0`: the
    backdoored model's labels of x, where the caller has them already."""
    with torch.no_grad(), autocast(x.device):
        clean_pred = model(x).float().argmax(1)
        if clean_pred0 is None:
            clean_pred0 = backdoored(x).float().argmax(1)
    delta = torch.full_like(x, p["eps"])
    n = len(x)
    for _ in range(p["steps"]):
        delta.requires_grad_(True)
        with autocast(x.device):
            out, out0 = model(x + delta).float(), backdoored(x + delta).float()
        pred, pred0 = out.argmax(1), out0.argmax(1)
        fooled, fooled0 = pred != clean_pred, pred0 != clean_pred0
        shared = fooled & fooled0 & (pred == pred0)
        if bool(shared.all()):
            delta = delta.detach()
            break
        adv = -(
            F.cross_entropy(out, y, reduction="none")[~fooled].sum()
            + F.cross_entropy(out0, y, reduction="none")[~fooled0].sum()
        ) / (2 * n)
        js = js_divergence(out.softmax(1), out0.softmax(1))[~shared].sum() / n
        (grad,) = torch.autograd.grad(p["beta1"] * adv + p["beta2"] * js, delta)
        delta = (delta.detach() - p["step"] * grad.sign()).clamp(-p["eps"], p["eps"])
    return delta.detach()


def shared_loss(
    model, backdoored, x_adv: torch.Tensor, y: torch.Tensor, clean_pred0: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """L_sh: on the rows where x + delta fools the backdoored model (its label is neither the true one
    nor its clean answer), -log(1 - p_model(that label)), summed and divided by the batch. Also
    returns the backdoored model's labels of x + delta (it is frozen: they do not change)."""
    with torch.no_grad(), autocast(x_adv.device):
        adv_pred0 = backdoored(x_adv).float().argmax(1)
    rows = (adv_pred0 != y) & (adv_pred0 != clean_pred0)
    with autocast(x_adv.device):
        logits = model(x_adv).float()
    probs = logits.softmax(1).gather(1, adv_pred0[:, None]).squeeze(1)
    return -(1.0 - probs[rows]).clamp_min(1e-12).log().sum() / len(x_adv), adv_pred0


def run(ctx: DefenseContext) -> dict:
    model, p = ctx.model, {k: float(v) if k != "steps" else int(v) for k, v in ctx.params.items()}
    backdoored = copy.deepcopy(model).eval()
    for param in backdoored.parameters():
        param.requires_grad_(False)
    stream = BatchStream(ctx.clean.x, ctx.clean.y, ctx.defender_batch, ctx.device, ctx.generator)
    optimizer = Adam(model.parameters(), lr=p["lr"])
    shown, shared_rows, rows = bar(ctx.epochs * len(stream), "sau"), 0, 0
    for epoch in range(1, ctx.epochs + 1):
        model.eval()  # BatchNorm frozen, as the reference
        for x, y in stream:
            with torch.no_grad(), autocast(ctx.device):
                clean_pred0 = backdoored(x).float().argmax(1)
            x_adv = x + shared_perturbation(model, backdoored, x, y, p, clean_pred0)
            unlearn, pred0 = shared_loss(model, backdoored, x_adv, y, clean_pred0)
            with autocast(ctx.device):
                loss = p["lambda1"] * F.cross_entropy(model(x).float(), y) + p["lambda3"] * unlearn
                if p["lambda2"]:
                    loss = loss + p["lambda2"] * F.cross_entropy(model(x_adv).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad(), autocast(ctx.device):
                pred = model(x_adv).float().argmax(1)
                shared_rows += int(((pred == pred0) & (pred0 != y)).sum())
                rows += len(y)
            shown.update()
        ctx.record(epoch, p["lr"])
    shown.close()
    return {"shared_adversarial_share": shared_rows / max(rows, 1)}
