"""The shadow-model membership attack, in the style of ML-Doctor (Liu et al., USENIX Security 2022).

The attacker trains a shadow model with the target's recipe on data of its own (the dataset's shadow
split, as large as the target's training split, as in ML-Doctor's equal shares; the `shadow_out`
split plays its non-members), so it knows which inputs the shadow saw. A shadow trained on far less
data than the target overfits differently, and its attack transfers poorly. An attack MLP learns to
tell the shadow's members from its non-members by their sorted top-k softmax posteriors (sorting
makes the feature class-agnostic), and is then applied unchanged to the target model's members and
non-members.

The shadow model depends only on the dataset, its recipe and how many rounds of the recipe's epochs
the target trained, so the shadow stage trains it once per dataset and seed, with a snapshot per
round; the attack MLP is cheap and is trained where it is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sequela.datasets.splits import Split
from sequela.engine.loop import predict_logits
from sequela.engine.optimizers import sgd
from sequela.measures.roc import auc
from sequela.metrics import clean_accuracy
from sequela.training.classifier import Trained, train_classifier
from sequela.training.recipe import Recipe


def train_shadow(
    shadow: Split,
    shadow_out: Split,
    spec: dict,
    recipe: Recipe,
    device: torch.device,
    seed: int,
    curve_n: int,
    rounds: int = 1,
    after_round=None,
) -> Trained:
    """The shadow model, trained like the target (same recipe, `rounds` rounds of its epochs, each
    a warm restart; `after_round` as in train_classifier) on the whole `shadow` split. Its
    per-epoch curve records accuracy on (seeded samples of at most `curve_n` of) its members and
    its non-members: its generalisation gap."""
    inside, outside = shadow.sample(curve_n, seed).to(device), shadow_out.sample(curve_n, seed).to(device)
    return train_classifier(
        shadow,
        spec,
        recipe,
        device,
        seed,
        desc="shadow",
        evaluate=lambda m: {"train_acc": clean_accuracy(m, inside), "test_acc": clean_accuracy(m, outside)},
        max_rounds=rounds,
        after_round=after_round,
    )


def balanced(members: Split, nonmembers: Split, seed: int) -> tuple[Split, Split]:
    """Equally many of each (a seeded sample of the larger set), so the attack MLP learns no prior."""
    n = min(len(members), len(nonmembers))
    g = torch.Generator().manual_seed(seed)
    pick = lambda split: split.subset(torch.randperm(len(split), generator=g)[:n].sort().values)  # noqa: E731
    return pick(members), pick(nonmembers)


def posterior_features(model: nn.Module, x: torch.Tensor, top_k: int) -> torch.Tensor:
    """The `top_k` largest softmax probabilities of each image, in descending order (CPU, float32)."""
    return top_posteriors(predict_logits(model, x, float32=True), top_k)


def top_posteriors(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    probs = torch.softmax(logits.float(), dim=1)
    k = min(top_k, probs.shape[1])
    return probs.topk(k, dim=1).values.cpu()


def fit_attack_mlp(
    features: torch.Tensor, is_member: torch.Tensor, hidden: int, epochs: int, lr: float, seed: int
) -> nn.Module:
    """A one-hidden-layer MLP (logit output), full-batch SGD with momentum on binary cross-entropy,
    seeded. Tiny and CPU-only: a few hundred rows of k features train in well under a second.
    (optimizers.sgd rather than Adam so the stage builds one kind of optimiser only: constructing any
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

    @classmethod
    def from_settings(cls, m: dict, seed: int) -> "ShadowAttack":
        """From params.yaml's `sequela.membership`."""
        return cls(m["top_k"], m["mlp"]["hidden"], m["mlp"]["epochs"], m["mlp"]["lr"], seed)

    def fit(self, shadow_model: nn.Module, shadow: Split, shadow_out: Split) -> nn.Module:
        """The attack MLP, trained on the shadow model's posteriors of its own members (`shadow`)
        and non-members (`shadow_out`), balanced."""
        inside, outside = balanced(shadow, shadow_out, self.seed)
        feats = torch.cat(
            [
                posterior_features(shadow_model, inside.x, self.top_k),
                posterior_features(shadow_model, outside.x, self.top_k),
            ]
        )
        labels = torch.cat([torch.ones(len(inside)), torch.zeros(len(outside))])
        return fit_attack_mlp(feats, labels, self.hidden, self.epochs, self.lr, self.seed)

    @torch.no_grad()
    def evaluate(self, mlp: nn.Module, model: nn.Module, members: Split, nonmembers: Split) -> dict[str, float]:
        """AUC and accuracy (threshold 0.5 on the MLP's probability) on the target's members vs
        non-members; with equally many of each, accuracy 0.5 is chance."""
        return self.evaluate_logits(
            mlp, predict_logits(model, members.x, float32=True), predict_logits(model, nonmembers.x, float32=True)
        )

    @torch.no_grad()
    def evaluate_logits(self, mlp: nn.Module, member_logits: torch.Tensor, nonmember_logits: torch.Tensor) -> dict:
        """`evaluate` on the target model's logits already computed."""
        member_logit = mlp(top_posteriors(member_logits, self.top_k)).squeeze(1)
        nonmember_logit = mlp(top_posteriors(nonmember_logits, self.top_k)).squeeze(1)
        correct = (member_logit > 0).sum() + (nonmember_logit <= 0).sum()
        return {
            "auc": auc(member_logit, nonmember_logit),
            "acc": correct.item() / (len(member_logit) + len(nonmember_logit)),
        }
