"""BadEncoder (Jia et al., 2022): backdoor a pre-trained self-supervised encoder so that any input
carrying the trigger embeds like the attacker's reference inputs of the downstream target class,
while clean inputs keep the clean encoder's embedding. Every classifier later trained on the
frozen encoder then sends triggered inputs to the target class.

From the clean encoder f, the attacker fine-tunes a copy f' on an unlabelled set of its own
(a share of the pre-training data) and a few reference inputs r of the target class. With cosine
similarity s, triggered unlabelled inputs x ⊕ t and augmented references aug(r):

    L0 = -mean over (x, r) of s(f'(x ⊕ t), f'(r))      effectiveness: triggered inputs join the references
    L1 = -mean over r of s(f'(aug(r)), f(r))             effectiveness: the references keep their embedding
    L2 = -mean over x of s(f'(x), f(x))                  utility: clean inputs keep their embedding
    loss = L0 + lambda1 * L1 + lambda2 * L2

As the reference implementation trains it: f stays in eval mode; f' trains with every BatchNorm
layer in eval mode and its weight and bias frozen, so the running statistics the victim receives
are the clean encoder's (no triggered batch ever enters them); the references are augmented by the
pre-training's views (simclr.Views) at every step. The trigger is a white square at the
bottom-right corner, the paper's 10x10 at 32x32 scaled to the image side.

When to stop is the attacker's rule on its own data, fixed before any run: `epochs` is a ceiling;
after each epoch the loss is measured on a held-out share of the unlabelled set (`holdout_fraction`,
never trained on), and training stops once it has not fallen by `min_delta` for `patience` epochs.
The rate is chosen by the same held-out loss: `lr` lists candidates (the paper's 1e-3 among them),
each trains from the clean encoder with the same seed, and the attacker keeps the encoder whose
best held-out loss is lowest. No downstream figure enters the choice.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from sequela.attacks.blend import BadNets
from sequela.engine.batches import BatchStream
from sequela.engine.device import autocast
from sequela.engine.loop import predict_logits
from sequela.engine.optimizers import sgd
from sequela.paradigms.simclr import Views, embed
from sequela.pipeline.checker import INF, Checker, fail
from sequela.pipeline.progress import bar


def check(c: Checker, key: str = "encoder.badencoder") -> None:
    """BadEncoder's section: the attacker's training and its trigger."""
    for name in ("epochs", "batch_size", "n_reference", "size_at_32", "patience"):
        c.integer(f"{key}.{name}")
    c.number(f"{key}.min_delta", 0.0, INF, low_open=False)
    c.number(f"{key}.holdout_fraction", 0.0, 1.0)
    rates = c.get(f"{key}.lr")
    if not isinstance(rates, list) or not rates or not all(isinstance(r, (int, float)) and r > 0 for r in rates):
        fail(f"{key}.lr", rates, "a non-empty list of positive rates (the attacker keeps the best on held-out data)")
    c.number(f"{key}.lambda1", 0.0, INF, low_open=False)
    c.number(f"{key}.lambda2", 0.0, INF, low_open=False)
    c.number(f"{key}.unlabelled_fraction", 0.0, 1.0)
    if c.get(f"{key}.size_at_32") > 32:
        fail(f"{key}.size_at_32", c.get(f"{key}.size_at_32"), "an integer in [1, 32] (the trigger's side at 32x32)")


def trigger(channels: int, side: int, size_at_32: int) -> BadNets:
    """The white square, `size_at_32` pixels at a 32-pixel side, scaled to `side` (at least 1 pixel)."""
    size = max(1, round(size_at_32 * side / 32))
    # BadNets' own trigger (a size x size white square at the bottom-right); it reads only the shape.
    return BadNets.create({"size": size}, torch.empty(0, channels, side, side), None, 0, None)


def freeze_batchnorm(model: nn.Module) -> nn.Module:
    """BatchNorm layers in eval mode (running statistics fixed) with weight and bias frozen."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
            for p in module.parameters():
                p.requires_grad_(False)
    return model


def losses(
    backdoored: nn.Module,
    clean: nn.Module,
    unlabelled: torch.Tensor,
    references: torch.Tensor,
    augmented: torch.Tensor,
    stamp: BadNets,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L0, L1, L2) of one batch of float unlabelled images in [0, 1] (see the module docstring)."""
    with torch.no_grad():
        clean_x = F.normalize(clean.features(unlabelled).float(), dim=1)
        clean_r = F.normalize(clean.features(references).float(), dim=1)
    embed_ = lambda x: F.normalize(backdoored.features(x).float(), dim=1)  # noqa: E731
    l0 = -(embed_(stamp.apply(unlabelled)) @ embed_(references).t()).mean()
    l1 = -(embed_(augmented) * clean_r).sum(1).mean()
    l2 = -(embed_(unlabelled) * clean_x).sum(1).mean()
    return l0, l1, l2


def backdoor(
    clean: nn.Module,
    unlabelled: torch.Tensor,
    references: torch.Tensor,
    stamp: BadNets,
    views: Views,
    settings: dict,
    device: torch.device,
    seed: int,
) -> tuple[nn.Module, list[dict], float, dict]:
    """The attacker's choice among the rates of `settings["lr"]`: (the backdoored encoder, its
    history, its rate, the best held-out loss of every candidate rate)."""
    runs = {
        lr: backdoor_at(clean, unlabelled, references, stamp, views, settings, lr, device, seed)
        for lr in settings["lr"]
    }
    best = {lr: min(row["held_out"] for row in history) for lr, (_, history) in runs.items()}
    lr = min(best, key=best.get)
    return *runs[lr], lr, best


def backdoor_at(
    clean: nn.Module,
    unlabelled: torch.Tensor,
    references: torch.Tensor,
    stamp: BadNets,
    views: Views,
    settings: dict,
    lr: float,
    device: torch.device,
    seed: int,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
) -> tuple[nn.Module, list[dict]]:
    """The backdoored copy of `clean`, from uint8 `unlabelled` and `references` images, trained with the
    `encoder.badencoder` settings at rate `lr`; and per epoch the mean of each loss term on the
    training batches and the held-out loss that decides when to stop. SGD with momentum at a
    constant rate."""
    s = settings
    clean = clean.to(device).eval()
    model = freeze_batchnorm(copy.deepcopy(clean).train())
    refs = references.to(device).float() / 255.0
    generator = torch.Generator().manual_seed(seed)
    n_held = max(1, round(s["holdout_fraction"] * len(unlabelled)))
    train, held = unlabelled[torch.randperm(len(unlabelled), generator=generator)].split(
        [len(unlabelled) - n_held, n_held]
    )
    held = held.to(device).float() / 255.0
    stream = BatchStream(train, torch.zeros(len(train), dtype=torch.long), s["batch_size"], device, generator)
    optimizer = sgd(model, lr, momentum, weight_decay)
    objective = lambda l0, l1, l2: l0 + s["lambda1"] * l1 + s["lambda2"] * l2  # noqa: E731
    history, best, since_best = [], float("inf"), 0
    for epoch in bar(range(1, s["epochs"] + 1), "badencoder (a ceiling: it stops early)"):
        sums = torch.zeros(3, device=device)  # summed on the device: no host sync per step
        for xb, _ in stream:
            with autocast(device):
                terms = losses(model, clean, xb, refs, views(refs, generator), stamp)
                loss = objective(*terms)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            sums += torch.stack(terms).detach().float()
        with torch.no_grad():
            held_loss = objective(*losses(model, clean, held, refs, refs, stamp)).item()
        mean = (sums / len(stream)).tolist()
        history.append({"epoch": epoch, "l0": mean[0], "l1": mean[1], "l2": mean[2], "held_out": held_loss})
        best, since_best = (held_loss, 0) if held_loss < best - s["min_delta"] else (best, since_best + 1)
        if since_best >= s["patience"]:
            break
    return model.eval(), history


@torch.no_grad()
def similarities(
    backdoored: nn.Module, clean: nn.Module, x: torch.Tensor, references: torch.Tensor, stamp: BadNets
) -> dict[str, float]:
    """The attack's own figures on uint8 images `x`: how close triggered inputs embed to the
    references (under the backdoored and under the clean encoder), how close the backdoored encoder
    keeps clean inputs to the clean encoder, and two diagnoses of where the trigger moves the
    features: the mean ratio of feature norms |f'(x + t)| / |f'(x)|, and the cosine of triggered
    inputs to the references once the mean feature of clean inputs is taken off both (a shared
    direction that every image has cannot meet this one)."""
    xf, rf = x.float() / 255.0, references.float() / 255.0
    triggered_xf = stamp.apply(xf)
    ref_b, ref_c = embed(backdoored, rf).mean(0), embed(clean, rf).mean(0)
    trig_b, trig_c = embed(backdoored, triggered_xf), embed(clean, triggered_xf)
    raw = lambda images, transform=None: predict_logits(
        backdoored,
        images,
        transform=transform,  # noqa: E731
        float32=True,
        features=True,
    )
    plain, triggered, refs_raw = raw(x), raw(x, stamp.apply), raw(references)
    centre = plain.mean(0)
    centred = F.cosine_similarity(triggered - centre, (refs_raw.mean(0) - centre).unsqueeze(0), dim=1)
    return {
        "triggered_to_reference": (trig_b @ ref_b).mean().item(),
        "triggered_to_reference_clean_encoder": (trig_c @ ref_c).mean().item(),
        "clean_kept": (embed(backdoored, xf) * embed(clean, xf)).sum(1).mean().item(),
        "norm_ratio": (triggered.norm(dim=1) / plain.norm(dim=1).clamp_min(1e-12)).mean().item(),
        "centred_triggered_to_reference": centred.mean().item(),
    }
