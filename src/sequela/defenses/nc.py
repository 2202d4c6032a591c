"""Neural Cleanse (Wang et al., 2019): a post-training defense.

For every class c it looks for the smallest trigger that sends clean images to c: a mask m (1, H, W)
and a pattern (C, H, W), both squashed into [0, 1] by a sigmoid, stamped as (1 - m) x + m pattern,
minimising CE(stamped, c) + cost_c |m|_1. A backdoor target needs a far smaller mask than any other
class, so classes whose mask norm lies more than `anomaly_threshold` median absolute deviations
(x 1.4826, consistent with a normal's sigma) below the median are flagged. The backdoor is then
unlearned: the model is fine-tuned on clean data in which an `unlearn_share` of each batch carries a
flagged class's reversed trigger but keeps its true label. Nothing flagged: the model is returned
unchanged, as the reference implementation does (fine-tuning it anyway would credit NC with what
plain fine-tuning achieves).

All classes are optimised at once (one batch holds every class's stamped copies of the same clean
images), for `steps` Adam steps. Each class keeps its own cost: every `check_every` steps it is
multiplied by `cost_multiplier` if the class's attack success over those steps reached
`asr_threshold` (shrink the mask harder) and divided by cost_multiplier^1.5 otherwise. The smallest
mask that reached the threshold is kept; the search stops early once no class's best norm has
improved by 1% for `patience` checks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sequela.defenses.base import DefenseContext
from sequela.engine.device import autocast
from sequela.engine.loop import fit
from sequela.engine.optimizers import Adam, sgd
from sequela.engine.schedules import constant
from sequela.pipeline.checker import INF, Checker
from sequela.pipeline.progress import bar


def reverse_triggers(model, ctx: DefenseContext, p: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Per-class masks (K, 1, H, W), patterns (K, C, H, W), mask L1 norms (K,), steps taken."""
    was_training, grads = model.training, [q.requires_grad for q in model.parameters()]
    model.eval()
    model.requires_grad_(False)  # only the mask and pattern are optimised
    x_all, device = ctx.clean.x, ctx.device
    _, c, h, w = x_all.shape
    k = model.fc.out_features
    classes = torch.arange(k, device=device)
    # Start from a mask of ~0.12 everywhere and a grey pattern: a weak trigger everywhere.
    mask_raw = torch.full((k, 1, h, w), -2.0, device=device, requires_grad=True)
    pattern_raw = torch.zeros((k, c, h, w), device=device, requires_grad=True)
    opt = Adam([mask_raw, pattern_raw], lr=p["lr"], betas=(0.5, 0.9))
    cost = torch.full((k,), float(p["init_cost"]), device=device)
    best_norm = torch.full((k,), float("inf"), device=device)
    best_mask = torch.sigmoid(mask_raw.detach()).clone()
    best_pattern = torch.sigmoid(pattern_raw.detach()).clone()
    hits, stale = torch.zeros(k, device=device), 0
    batch = p["batch_size"]
    shown = bar(p["steps"], "nc: reverse triggers")
    for step in range(1, p["steps"] + 1):
        shown.update()
        idx = torch.randint(len(x_all), (batch,), generator=ctx.generator)
        x = x_all[idx].to(device).float().div_(255.0)
        mask, pattern = torch.sigmoid(mask_raw), torch.sigmoid(pattern_raw)
        stamped = (1 - mask[:, None]) * x[None] + (mask * pattern)[:, None]  # (K, B, C, H, W)
        with autocast(device):
            logits = model(stamped.flatten(0, 1)).float().view(k, batch, -1)
        ce = F.cross_entropy(logits.flatten(0, 1), classes.repeat_interleave(batch), reduction="none")
        norms = mask.sum(dim=(1, 2, 3))
        loss = (ce.view(k, batch).mean(1) + cost * norms).sum()  # classes are independent: sum
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        hits += (logits.argmax(-1) == classes[:, None]).float().mean(1).detach()
        if step % p["check_every"] == 0:
            # Success is judged over the window; the mask kept is the one at its end.
            success = hits / p["check_every"] >= p["asr_threshold"]
            better = success & (norms.detach() < best_norm * 0.99)
            best_norm = torch.where(better, norms.detach(), best_norm)
            best_mask[better], best_pattern[better] = mask.detach()[better], pattern.detach()[better]
            cost = torch.where(success, cost * p["cost_multiplier"], cost / p["cost_multiplier"] ** 1.5)
            hits.zero_()
            stale = 0 if bool(better.any()) else stale + 1
            if stale >= p["patience"] and bool(torch.isfinite(best_norm).all()):
                break
    shown.close()
    for q, g in zip(model.parameters(), grads):
        q.requires_grad_(g)
    model.train(was_training)
    # A class that never reached the threshold keeps its last mask and pattern.
    final = torch.isinf(best_norm)
    best_mask[final] = torch.sigmoid(mask_raw.detach())[final]
    best_pattern[final] = torch.sigmoid(pattern_raw.detach())[final]
    return best_mask, best_pattern, best_mask.sum(dim=(1, 2, 3)), step


def anomaly_indices(norms: torch.Tensor) -> torch.Tensor:
    """(norm - median) / (1.4826 * median absolute deviation): NC's anomaly index, with a sign
    (negative below the median) so that only the small side can be flagged."""
    median = norms.median()
    mad = 1.4826 * (norms - median).abs().median()
    return (norms - median) / mad.clamp_min(1e-12)


def stamping_loss(masks: torch.Tensor, patterns: torch.Tensor, share: float, generator: torch.Generator):
    """Cross-entropy on the batch after stamping a random `share` of it with a random flagged
    class's reversed trigger; the labels stay the true ones, which teaches the model to ignore it."""

    def loss_fn(model, x, y):
        n = len(x)
        stamp = (torch.rand(n, generator=generator) < share).to(x.device)
        which = torch.randint(len(masks), (n,), generator=generator).to(x.device)
        m, pat = masks[which], patterns[which]
        x = torch.where(stamp[:, None, None, None], (1 - m) * x + m * pat, x)
        return F.cross_entropy(model(x), y)

    return loss_fn


def check(c: Checker, key: str) -> None:
    for name in ("steps", "batch_size", "check_every", "patience"):
        c.integer(f"{key}.{name}")
    for name in ("lr", "init_cost", "anomaly_threshold", "lr_unlearn"):
        c.number(f"{key}.{name}", 0.0, INF)
    c.number(f"{key}.cost_multiplier", 1.0, INF)
    c.number(f"{key}.asr_threshold", 0.0, 1.0, high_open=False)
    c.number(f"{key}.unlearn_share", 0.0, 1.0, low_open=False, high_open=False)


def run(ctx: DefenseContext) -> dict:
    p = ctx.params
    masks, patterns, norms, steps = reverse_triggers(ctx.model, ctx, p)
    index = anomaly_indices(norms)
    flagged = torch.nonzero(index < -p["anomaly_threshold"]).flatten()
    figures = {
        "mask_norms": [round(v, 2) for v in norms.tolist()],
        "anomaly_index": [round(v, 2) for v in index.abs().tolist()],
        "flagged": flagged.tolist(),
        "flagged_target": bool((flagged == ctx.target).any()),
        "unlearned": bool(len(flagged)),
        "reverse_steps": steps,
        "epochs_trained": 0,
    }
    if not len(flagged):
        return figures  # nothing detected: nothing to repair
    loss_fn = stamping_loss(masks[flagged], patterns[flagged], p["unlearn_share"], ctx.generator)
    optimizer = sgd(ctx.model, p["lr_unlearn"], ctx.common["momentum"], ctx.common["weight_decay"])
    fit(
        ctx.model,
        ctx.clean_stream(),
        optimizer,
        constant(p["lr_unlearn"]),
        ctx.epochs,
        on_epoch=ctx.record,
        loss_fn=loss_fn,
        desc="nc unlearning",
    )
    return {**figures, "epochs_trained": ctx.epochs}
