"""Backdoor re-injection: how easily a model takes the backdoor back (retune.py holds the retuning attack).

The attacker fine-tunes a copy of the model on a little clean data plus `k` poisoned samples (the
same trigger, relabelled to the target) for a few epochs, and the ASR is recorded after each epoch.
A defended model whose backdoor was only suppressed, not erased, regains it faster than a clean
reference model that never had it: that difference is the re-injection sequela.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace

import torch

from sequela.attacks.base import Attack
from sequela.datasets.splits import Split
from sequela.engine.batches import Augment, BatchStream
from sequela.engine.loop import fit
from sequela.engine.optimizers import sgd
from sequela.engine.schedules import constant
from sequela.metrics import backdoor_metrics
from sequela.pipeline.checker import INF, Checker, fail
from sequela.pipeline.errors import ConfigError


def check(c: Checker, datasets: list[str]) -> None:
    """`sequela.reinject`, and its n_clean + k rows within each dataset's training split."""
    from sequela.datasets.sizes import NUM_CLASSES
    from sequela.pipeline.config import train_size

    for key in ("n_clean", "k", "epochs", "batch_size", "draws", "eval_n"):
        c.integer(f"sequela.reinject.{key}")
    c.number("sequela.reinject.lr", 0.0, INF)
    n_clean, k = c.get("sequela.reinject.n_clean"), c.get("sequela.reinject.k")
    for ds in datasets:
        # k non-target rows must be left after the n_clean: about k / (1 - 1/classes) rows of a balanced set
        if n_clean + math.ceil(k * NUM_CLASSES[ds] / (NUM_CLASSES[ds] - 1)) > train_size(c, ds):
            fail(
                "sequela.reinject.n_clean",
                n_clean,
                f"n_clean + k (k non-target images) within the {train_size(c, ds)} images of {ds}'s training split",
            )


def reinjection_set(train: Split, n_clean: int, k: int, target: int, seed: int) -> tuple[Split, torch.Tensor]:
    """`n_clean` clean training images and, disjoint from them, `k` non-target ones to poison
    (seeded). Returns the combined set (true labels) and the positions of the `k` to poison."""
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    clean, rest = perm[:n_clean], perm[n_clean:]
    victims = rest[train.y[rest] != target][:k]  # all-to-one: a target-class image would teach nothing
    if len(clean) < n_clean or len(victims) < k:
        raise ConfigError(
            f"params.yaml: sequela.reinject.n_clean = {n_clean} is not allowed; allowed: n_clean "
            f"clean + k = {k} non-target images within the {len(train)} of the training split"
        )
    picked = torch.cat([clean, victims])
    return train.subset(picked), torch.arange(n_clean, n_clean + k)


@dataclass
class Reinjection:
    n_clean: int = 200
    k: int = 10
    epochs: int = 5
    lr: float = 0.01
    batch_size: int = 16
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    eval_n: int = 1000

    @classmethod
    def from_settings(cls, r: dict, momentum: float, weight_decay: float, seed: int) -> Reinjection:
        """From params.yaml's `sequela.reinject` and the measured model's recipe (momentum, weight decay)."""
        return cls(
            r["n_clean"], r["k"], r["epochs"], r["lr"], r["batch_size"], momentum, weight_decay, seed, r["eval_n"]
        )

    def run(
        self,
        model: torch.nn.Module,
        train: Split,
        test: Split,
        attack: Attack,
        target: int,
        augment: Augment | None = None,
        measure_before: bool = True,
    ) -> dict:
        """Fine-tune a copy of `model` (the original is left untouched). Returns `asr_before` (None
        with `measure_before=False`: a repeated draw skips that pass), the per-epoch `curve` of ASR on
        the test split, the final `asr` and `mean_asr`, the mean over the curve: with only k poisoned
        samples the last epoch's ASR swings with whichever batches held them, and the mean (the area
        under the curve) is the steadier summary."""
        device = next(model.parameters()).device
        model = copy.deepcopy(model)
        # Each epoch's ASR is taken after every epoch of every draw (18 times per model by default).
        test = test.sample(self.eval_n, self.seed)
        data, poisoned = reinjection_set(train, self.n_clean, self.k, target, self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        # k fixed poisoned images, whatever schedule the attacker trained with (attacks/base.py).
        stream = BatchStream(
            data.x,
            data.y,
            self.batch_size,
            device,
            generator,
            augment=augment,
            attack=attack.as_dataset(),
            poisoned=poisoned,
            target=target,
        )
        optimizer = sgd(model, self.lr, self.momentum, self.weight_decay)
        before = backdoor_metrics(model, test, attack, target)["asr"] if measure_before else None
        curve: list[float] = []
        fit(
            model,
            stream,
            optimizer,
            constant(self.lr),
            self.epochs,
            desc="reinject",
            on_epoch=lambda epoch, lr: curve.append(backdoor_metrics(model, test, attack, target)["asr"]),
        )
        return {"asr_before": before, "curve": curve, "asr": curve[-1], "mean_asr": sum(curve) / len(curve)}


def repeated(
    reinjection: Reinjection,
    draws: int,
    model: torch.nn.Module,
    train: Split,
    test: Split,
    attack: Attack,
    target: int,
    augment: Augment | None = None,
) -> dict:
    """`draws` independent re-injections (each its own clean rows, poisoned rows and batch order).

    One run's curve swings with which batches held the k poisoned rows (the clean reference on
    digits gave 0.39, 0.0, 0.07, 0.44, 0.24 over five epochs), so the headline `mean_asr` is the
    mean over epochs and draws; `sd_draws` is the spread of the per-draw means, `curve` the mean
    curve, `last_asr` the mean of the last epochs."""
    # Only the first draw's ASR before fine-tuning is reported, so only it pays for that pass.
    runs = [
        replace(reinjection, seed=reinjection.seed * 1000 + d).run(
            model, train, test, attack, target, augment, measure_before=d == 0
        )
        for d in range(draws)
    ]
    means = torch.tensor([r["mean_asr"] for r in runs], dtype=torch.float64)
    curve = torch.tensor([r["curve"] for r in runs], dtype=torch.float64).mean(0)
    return {
        "asr_before": runs[0]["asr_before"],
        "mean_asr": means.mean().item(),
        "sd_draws": means.std().item() if draws > 1 else 0.0,
        "curve": curve.tolist(),
        "last_asr": curve[-1].item(),
    }


def figures(reinjected: dict) -> dict:
    """The re-injection figures a sequela cell reports, from `repeated`'s result."""
    return {
        "reinject_asr_before": reinjected["asr_before"],
        "reinject_asr": reinjected["mean_asr"],
        "reinject_asr_sd_draws": reinjected["sd_draws"],
        "reinject_last_asr": reinjected["last_asr"],
        "reinject_curve": [round(a, 3) for a in reinjected["curve"]],
    }


def measure_of(cell, settings: dict):
    """The re-injection measure of one model, the same in every paradigm: `draws` runs on the cell's
    training split with the recipe's momentum, weight decay and augmentation (measures/registry.py)."""
    r = settings["reinject"]
    reinjection = Reinjection.from_settings(r, cell.recipe.momentum, cell.recipe.weight_decay, cell.seed)
    augment = Augment(cell.recipe.crop_padding, cell.recipe.flip)

    def measure(model: torch.nn.Module, removed: torch.Tensor | None = None) -> dict:
        return figures(
            repeated(reinjection, r["draws"], model, cell.ds.train, cell.test, cell.trigger, cell.target, augment)
        )

    return measure
