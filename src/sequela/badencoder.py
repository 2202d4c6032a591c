"""BadEncoder (Jia et al., 2022): backdoor a pre-trained self-supervised encoder so that any input
carrying the trigger embeds like the attacker's reference inputs of the downstream target class,
while clean inputs keep the clean encoder's embedding. Every classifier later trained on the
frozen encoder then sends triggered inputs to the target class.

From the clean encoder f, the attacker fine-tunes a copy f' on an unlabelled shadow dataset
(a share of the pre-training data) and a few reference inputs r of the target class. With cosine
similarity s and triggered shadow inputs x ⊕ t:

    L0 = -mean over (x, r) of s(f'(x ⊕ t), f'(r))     effectiveness: triggered inputs join the references
    L1 = -mean over r of s(f'(r), f(r))                 effectiveness: the references keep their embedding
    L2 = -mean over x of s(f'(x), f(x))                 utility: clean inputs keep their embedding
    loss = L0 + lambda1 * L1 + lambda2 * L2

The trigger is a white square at the bottom-right corner, the paper's 10x10 at 32x32 scaled to the
image side. f stays in eval mode; f' trains in train mode, as in the reference implementation.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from sequela.attacks.blend import BadNets
from sequela.checker import INF, Checker, fail
from sequela.engine import BatchStream, autocast, sgd


def check(c: Checker, key: str = "encoder.badencoder") -> None:
    """BadEncoder's section: the attacker's training and its trigger."""
    for name in ("epochs", "batch_size", "n_reference", "size_at_32"):
        c.integer(f"{key}.{name}")
    c.number(f"{key}.lr", 0.0, INF)
    c.number(f"{key}.lambda1", 0.0, INF, low_open=False)
    c.number(f"{key}.lambda2", 0.0, INF, low_open=False)
    c.number(f"{key}.shadow_fraction", 0.0, 1.0)
    if c.get(f"{key}.size_at_32") > 32:
        fail(f"{key}.size_at_32", c.get(f"{key}.size_at_32"), "an integer in [1, 32] (the trigger's side at 32x32)")


def trigger(channels: int, side: int, size_at_32: int) -> BadNets:
    """The white square, `size_at_32` pixels at a 32-pixel side, scaled to `side` (at least 1 pixel)."""
    size = max(1, round(size_at_32 * side / 32))
    # BadNets' own trigger (a size x size white square at the bottom-right); it reads only the shape.
    return BadNets.create({"size": size}, torch.empty(0, channels, side, side), None, 0, None)


def losses(backdoored: nn.Module, clean: nn.Module, shadow: torch.Tensor, references: torch.Tensor,
           stamp: BadNets) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L0, L1, L2) of one batch of float shadow images in [0, 1] (see the module docstring)."""
    with torch.no_grad():
        clean_x = F.normalize(clean.features(shadow).float(), dim=1)
        clean_r = F.normalize(clean.features(references).float(), dim=1)
    # One forward pass for all three inputs, so batch-norm sees them together.
    out = F.normalize(backdoored.features(torch.cat([stamp.apply(shadow), references, shadow])).float(), dim=1)
    triggered, refs, plain = out.split([len(shadow), len(references), len(shadow)])
    l0 = -(triggered @ refs.t()).mean()
    l1 = -(refs * clean_r).sum(1).mean()
    l2 = -(plain * clean_x).sum(1).mean()
    return l0, l1, l2


def backdoor(clean: nn.Module, shadow: torch.Tensor, references: torch.Tensor, stamp: BadNets, epochs: int,
             batch_size: int, lr: float, lambda1: float, lambda2: float, device: torch.device, seed: int,
             momentum: float = 0.9, weight_decay: float = 5e-4) -> tuple[nn.Module, list[dict]]:
    """The backdoored copy of `clean`, from uint8 `shadow` and `references` images; and per epoch the
    mean of each loss term. SGD with momentum at a constant rate, as the reference implementation."""
    clean = clean.to(device).eval()
    model = copy.deepcopy(clean).train()
    refs = references.to(device).float() / 255.0
    generator = torch.Generator().manual_seed(seed)
    stream = BatchStream(shadow, torch.zeros(len(shadow), dtype=torch.long), batch_size, device, generator)
    optimizer = sgd(model, lr, momentum, weight_decay)
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        sums = torch.zeros(3, device=device)  # summed on the device: no host sync per step
        for xb, _ in stream:
            with autocast(device):
                l0, l1, l2 = losses(model, clean, xb, refs, stamp)
                loss = l0 + lambda1 * l1 + lambda2 * l2
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            sums += torch.stack([l0, l1, l2]).detach().float()
        mean = (sums / len(stream)).tolist()
        history.append({"epoch": epoch, "l0": mean[0], "l1": mean[1], "l2": mean[2]})
    return model.eval(), history


@torch.no_grad()
def similarities(backdoored: nn.Module, clean: nn.Module, x: torch.Tensor, references: torch.Tensor,
                 stamp: BadNets) -> dict[str, float]:
    """The attack's own figures on uint8 images `x`: how close triggered inputs embed to the
    references (under the backdoored and under the clean encoder) and how close the backdoored
    encoder keeps clean inputs to the clean encoder."""
    from sequela.simclr import embed

    xf, rf = x.float() / 255.0, references.float() / 255.0
    ref_b, ref_c = embed(backdoored, rf).mean(0), embed(clean, rf).mean(0)
    trig_b, trig_c = embed(backdoored, stamp.apply(xf)), embed(clean, stamp.apply(xf))
    return {"triggered_to_reference": (trig_b @ ref_b).mean().item(),
            "triggered_to_reference_clean_encoder": (trig_c @ ref_c).mean().item(),
            "clean_kept": (embed(backdoored, xf) * embed(clean, xf)).sum(1).mean().item()}
