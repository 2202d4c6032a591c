"""The retuning attack of Min et al., NeurIPS 2024 ("superficial safety"): does a purified
model relearn its backdoor from a handful of poisons?

The attacker fine-tunes a copy of the model on the defender's own clean split with its first `k`
rows replaced by `k` of the attacker's poisoned training images (trigger stamped, target label; fed
without augmentation, the clean rows keep the recipe's), by SGD at a constant rate with momentum
and no weight decay, for a few epochs. O-ASR is the model's ASR before (the
defense's figure), P-ASR its ASR after. A defense that erased the backdoor leaves a P-ASR near the
clean model's; one that only hid it lets the few poisons bring it back.

The official setting is the default: 5 of a 1,000-row split (2% of CIFAR-10's training set) are
poisons, batch 128, lr 0.01, momentum 0.9, no weight decay, no schedule, 5 epochs. Where the
defender's split has another size, its poison share is kept rather than its count: k = round(`share`
x rows), at least 1 (`poison_count`); the batch stays 128 whatever the recipe's. On digits the
defender's split holds 337 rows, so k = 2 and an epoch is 3 steps (15 in all, against 40 on their
split): the share and the batch match theirs, the number of steps cannot. Two departures: its
poisoned rows may come from the target class (here they are drawn from the attacker's poisoned rows,
non-target by construction), and it augments the clean rows once and freezes them (here they are
re-augmented every epoch, as every other fine-tuning here). The re-injection measure (reinject.py)
is the older, looser variant: its own 200 training rows, 10 poisons, weight decay, three draws; both
are reported under their own names.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from sequela.attacks.base import Attack
from sequela.datasets.splits import Split
from sequela.engine.batches import Augment, BatchStream
from sequela.engine.loop import fit
from sequela.engine.optimizers import sgd
from sequela.engine.schedules import constant
from sequela.metrics import backdoor_metrics, evaluate
from sequela.pipeline.checker import INF, Checker


def check(c: Checker, datasets: list[str] = ()) -> None:
    """`sequela.retune`: a poison share in (0, 1), a batch (null: the recipe's), epochs and eval_n."""
    c.number("sequela.retune.share", 0.0, 1.0)
    if c.get("sequela.retune.batch_size") is not None:
        c.integer("sequela.retune.batch_size", 1)
    for key in ("epochs", "eval_n"):
        c.integer(f"sequela.retune.{key}", 1)
    c.number("sequela.retune.lr", 0.0, INF)
    c.number("sequela.retune.momentum", 0.0, 1.0, low_open=False)
    c.number("sequela.retune.weight_decay", 0.0, INF, low_open=False)


def poison_count(rows: int, share: float) -> int:
    """How many of a `rows`-row retuning set are poisons: the share Min et al. use, at least one."""
    return max(1, round(share * rows))


def non_target_rows(labels: torch.Tensor, target: int, k: int, seed: int) -> torch.Tensor:
    """`k` training rows whose label is not the target, a seeded draw: the poisons of a cell that has
    no poisoned training rows of its own (the transfer and encoder paradigms' downstream task)."""
    candidates = (labels != target).nonzero().flatten()
    order = torch.randperm(len(candidates), generator=torch.Generator().manual_seed(seed))
    return candidates[order[:k]]


def retuning_set(
    clean: Split, train: Split, poisoned: torch.Tensor, k: int, attack: Attack, target: int, device: torch.device
) -> tuple[Split, torch.Tensor]:
    """The defender's clean split with its first `k` rows replaced by the first `k` of the
    attacker's poisoned training rows, stamped and labelled with the target, kept as uint8 images
    as a poisoned dataset would ship them. Returns the set and the flags of those rows."""
    if k > min(len(clean), len(poisoned)):
        raise ValueError(
            f"sequela.retune.share: {k} poisons are more than the {len(clean)} clean rows or the "
            f"{len(poisoned)} poisoned training rows"
        )
    rows = train.x[poisoned[:k].cpu()].to(device).float().div(255.0)
    stamped = attack.apply(rows).clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8).cpu()
    x, y = clean.x.clone(), clean.y.clone()
    x[:k], y[:k] = stamped, target
    flags = torch.zeros(len(y), dtype=torch.bool)
    flags[:k] = True
    return Split(x, y), flags


@dataclass
class Retuning:
    k: int = 5
    epochs: int = 5
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 128
    eval_n: int = 1000
    seed: int = 0

    @classmethod
    def from_settings(cls, r: dict, rows: int, recipe_batch: int, seed: int) -> Retuning:
        """From params.yaml's `sequela.retune`, for a retuning set of `rows` rows; a null batch takes
        the recipe's."""
        return cls(
            poison_count(rows, r["share"]),
            r["epochs"],
            r["lr"],
            r["momentum"],
            r["weight_decay"],
            r["batch_size"] or recipe_batch,
            r["eval_n"],
            seed,
        )

    def run(
        self,
        model: torch.nn.Module,
        data: Split,
        plain: torch.Tensor,
        test: Split,
        attack: Attack,
        target: int,
        augment: Augment | None = None,
    ) -> dict:
        """Retune a copy of `model` (the original is left untouched) on `retuning_set`'s `data`.
        Returns P-ASR and CA after, on the whole test split, and the per-epoch ASR on a seeded
        `eval_n` of it."""
        device = next(model.parameters()).device
        model = copy.deepcopy(model)
        sample = test.sample(self.eval_n, self.seed)
        stream = BatchStream(
            data.x,
            data.y,
            self.batch_size,
            device,
            torch.Generator().manual_seed(self.seed),
            augment=augment,
            plain=plain,
        )
        curve: list[float] = []
        fit(
            model,
            stream,
            sgd(model, self.lr, self.momentum, self.weight_decay),
            constant(self.lr),
            self.epochs,
            desc="retune",
            on_epoch=lambda epoch, lr: curve.append(backdoor_metrics(model, sample, attack, target)["asr"]),
        )
        after = evaluate(model, test, attack, target)
        return {"p_asr": after["asr"], "p_ca": after["ca"], "retune_curve": [round(a, 4) for a in curve]}


def standalone(cell, settings: dict):
    """The retuning attack on a standalone model: the defender's clean rows with the first k swapped
    for the attacker's poisoned training rows (measures/registry.py)."""
    retuning = Retuning.from_settings(settings["retune"], len(cell.defender), cell.recipe.batch_size, cell.seed)
    data, plain = retuning_set(
        cell.ds.train.subset(cell.defender),
        cell.ds.train,
        cell.poisoned,
        retuning.k,
        cell.trigger,
        cell.target,
        cell.device,
    )
    return _measure(cell, retuning, data, plain)


def reused(cell, settings: dict):
    """The retuning attack on a downstream model: the user's whole downstream training set with its first
    k rows swapped for k non-target ones stamped with the shipped trigger (measures/reused.py)."""
    retuning = Retuning.from_settings(settings["retune"], len(cell.ds.train), cell.recipe.batch_size, cell.seed)
    poisons = non_target_rows(cell.ds.train.y, cell.target, retuning.k, cell.seed)
    data, plain = retuning_set(
        cell.ds.train, cell.ds.train, poisons, retuning.k, cell.trigger, cell.target, cell.device
    )
    return _measure(cell, retuning, data, plain)


def _measure(cell, retuning: Retuning, data: Split, plain: torch.Tensor):
    augment = Augment(cell.recipe.crop_padding, cell.recipe.flip)

    def measure(model: torch.nn.Module, removed: torch.Tensor | None = None) -> dict:
        return retuning.run(model, data, plain, cell.test, cell.trigger, cell.target, augment)

    return measure
