"""The shadow-model membership attack, in the style of ML-Doctor (Liu et al., USENIX Security 2022).

The attacker trains a shadow model with the target's recipe on data of its own (the member half of
the dataset's shadow split; the other half plays the non-members), so it knows which inputs the
shadow saw. An attack MLP learns to tell the shadow's members from its non-members by their sorted
top-k softmax posteriors (sorting makes the feature class-agnostic), and is then applied unchanged
to the target model's members and non-members.

The shadow model depends only on the dataset and its recipe, so the shadow stage trains it once per
dataset; the attack MLP is cheap and is trained where it is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sequela.config import Recipe
from sequela.data import Split
from sequela.engine import predict_logits, sgd
from sequela.metrics import clean_accuracy
from sequela.sequela.roc import auc
from sequela.training import Trained, train_classifier


def split_shadow(n: int, seed: int) -> torch.Tensor:
    """Seeded indices of the shadow's members: half of the shadow split (rounded down)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[: n // 2].sort().values


def nonmember_mask(n: int, members: torch.Tensor) -> torch.Tensor:
    keep = torch.ones(n, dtype=torch.bool)
    keep[members.cpu()] = False
    return keep


def train_shadow(shadow: Split, spec: dict, recipe: Recipe, device: torch.device, seed: int) -> tuple[Trained, torch.Tensor]:
    """The shadow model, trained like the target (same recipe) on the member half of `shadow`.
    Its per-epoch curve records accuracy on both halves (train / held-out), its generalisation gap."""
    members = split_shadow(len(shadow), seed)
    inside, outside = shadow.subset(members).to(device), shadow.subset(nonmember_mask(len(shadow), members)).to(device)
    run = train_classifier(inside, spec, recipe, device, seed, desc="shadow",
                           evaluate=lambda m: {"train_acc": clean_accuracy(m, inside),
                                               "test_acc": clean_accuracy(m, outside)})
    return run, members


def posterior_features(model: nn.Module, x: torch.Tensor, top_k: int) -> torch.Tensor:
    """The `top_k` largest softmax probabilities of each image, in descending order (CPU, float32)."""
    probs = torch.softmax(predict_logits(model, x).float(), dim=1)
    k = min(top_k, probs.shape[1])
    return probs.topk(k, dim=1).values.cpu()


def fit_attack_mlp(features: torch.Tensor, is_member: torch.Tensor, hidden: int, epochs: int, lr: float,
                   seed: int) -> nn.Module:
    """A one-hidden-layer MLP (logit output), full-batch SGD with momentum on binary cross-entropy,
    seeded. Tiny and CPU-only: a few hundred rows of k features train in well under a second.
    (engine.sgd rather than Adam so the stage builds one kind of optimiser only: constructing any
    torch.optim optimiser first imports torch._dynamo, seconds of CPU on this project's scale.)"""
    torch.manual_seed(seed)
    mlp = nn.Sequential(nn.Linear(features.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, 1))
    optimizer = sgd(mlp, lr, momentum=0.9, weight_decay=0.0)
    target = is_member.float()
    for _ in range(epochs):
        loss = nn.functional.binary_cross_entropy_with_logits(mlp(features).squeeze(1), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return mlp.eval()


@dataclass
class ShadowAttack:
    top_k: int = 3
    hidden: int = 64
    epochs: int = 300
    lr: float = 0.1
    seed: int = 0

    def fit(self, shadow_model: nn.Module, shadow: Split, shadow_members: torch.Tensor) -> nn.Module:
        """The attack MLP, trained on the shadow model's posteriors of its own members / non-members."""
        inside = shadow.subset(shadow_members)
        outside = shadow.subset(nonmember_mask(len(shadow), shadow_members))
        feats = torch.cat([posterior_features(shadow_model, inside.x, self.top_k),
                           posterior_features(shadow_model, outside.x, self.top_k)])
        labels = torch.cat([torch.ones(len(inside)), torch.zeros(len(outside))])
        return fit_attack_mlp(feats, labels, self.hidden, self.epochs, self.lr, self.seed)

    @torch.no_grad()
    def evaluate(self, mlp: nn.Module, model: nn.Module, members: Split, nonmembers: Split) -> dict[str, float]:
        """AUC and accuracy (threshold 0.5 on the MLP's probability) on the target's members vs
        non-members; with equally many of each, accuracy 0.5 is chance."""
        member_logit = mlp(posterior_features(model, members.x, self.top_k)).squeeze(1)
        nonmember_logit = mlp(posterior_features(model, nonmembers.x, self.top_k)).squeeze(1)
        correct = (member_logit > 0).sum() + (nonmember_logit <= 0).sum()
        return {"auc": auc(member_logit, nonmember_logit),
                "acc": correct.item() / (len(member_logit) + len(nonmember_logit))}
