"""CA, ASR and RA, as BackdoorBench defines them.

- CA: top-1 accuracy on the clean test set.
- ASR: among test images whose true label is not the target, the share classified as the target
  once triggered. Target-class images are left out: they would count as "successes" for free.
- RA: among the same triggered images, the share still classified as their true label.
"""

from __future__ import annotations

from sequela.attacks.base import Attack
from sequela.datasets.splits import Split
from sequela.engine.loop import predict


def clean_accuracy(model, test: Split, batch_size: int = 512) -> float:
    pred = predict(model, test.x, batch_size=batch_size)
    return (pred == test.y.to(pred.device)).float().mean().item()


def backdoor_metrics(model, test: Split, attack: Attack, target: int, batch_size: int = 512) -> dict[str, float]:
    keep = test.y != target
    victims = test.subset(keep)
    pred = predict(model, victims.x, batch_size=batch_size, transform=attack.apply)
    y = victims.y.to(pred.device)
    return {
        "asr": (pred == target).float().mean().item(),
        "ra": (pred == y).float().mean().item(),
    }


def evaluate(model, test: Split, attack: Attack, target: int, batch_size: int = 512) -> dict[str, float]:
    return {"ca": clean_accuracy(model, test, batch_size), **backdoor_metrics(model, test, attack, target, batch_size)}
