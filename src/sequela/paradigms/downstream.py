"""A model reused for a new task: the transfer and encoder paradigms' shared downstream cell.

The user holds its own labelled downstream data and a model someone else trained: a backdoored
upstream classifier (transfer paradigm) or a backdoored self-supervised encoder (encoder paradigm).

1. Its downstream images are fitted to the model's input (side, channels), so the attacker's
   trigger, defined at the upstream resolution, is stamped where the model sees it.
2. The baseline ("none"): a fresh head trained on the frozen backbone, the usual practice. The
   backbone is left bit for bit as shipped: no gradient reaches it and its batch-norm statistics
   stay frozen (the backbone runs in eval mode). The transfer paradigm trains a linear head with
   SGD on augmented batches (`train_head`); the encoder paradigm trains its MLP classifier on the
   encoder's features as BadEncoder's reference does (`train_head_on_features`).
3. The defenses: FT and SFT of the whole model, backbone and new head, on the same downstream data,
   with the standalone paradigm's schedules and settings (`defense.*`), from the baseline's model.

ASR is measured as in the standalone paradigm: downstream test images whose true label is not the
downstream target, stamped with the upstream trigger, counted when classified as that target.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from sequela import models
from sequela.attacks.base import Attack
from sequela.datasets import splits
from sequela.datasets.splits import Dataset, Split
from sequela.defenses.apply import Defended, apply_defense
from sequela.defenses.finetune import FINE_TUNING
from sequela.engine.batches import Augment, BatchStream
from sequela.engine.device import seed_everything
from sequela.engine.loop import fit, predict_logits
from sequela.engine.optimizers import SGD, Adam
from sequela.engine.schedules import cosine
from sequela.metrics import clean_accuracy, evaluate
from sequela.pipeline.checker import INF, Checker, fail, is_int
from sequela.pipeline.records import CurveRecorder, write_curve
from sequela.sources import loaders
from sequela.training.recipe import Recipe

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, what PIL's "L" conversion uses


def check_transfer(c: Checker) -> None:
    """`transfer`: the pairs (the upstream's train@ models are what is shipped), target and head."""
    from sequela.datasets.sizes import DATASETS

    up = c.get("transfer.upstream")
    for name in up if isinstance(up, list) else []:
        if name not in c.get("grid.datasets"):
            fail(
                "transfer.upstream",
                name,
                f"one of grid.datasets ({', '.join(c.get('grid.datasets'))}); "
                "without the transfer cells: -S 'transfer.upstream=[]'",
            )
    up = c.names("transfer.upstream", c.get("grid.datasets"), empty_ok=True)
    down = c.names("transfer.downstream", DATASETS, empty_ok=True)
    for name in set(up) & set(down):
        fail("transfer.downstream", name, f"a dataset other than the upstream {name} (a pair transfers to a new task)")
    c.names("transfer.attacks", c.get("grid.attacks"), empty_ok=True)
    _check_downstream(c, "transfer", down)


def check_encoder(c: Checker) -> None:
    """`encoder`: the pairs, target, the user's classifier (SimCLR and BadEncoder check their own)."""
    from sequela.datasets.sizes import DATASETS

    c.names("encoder.pretrain", [d for d in DATASETS if d in c.get("recipe")], empty_ok=True)
    _check_downstream(c, "encoder", c.names("encoder.downstream", DATASETS, empty_ok=True))
    c.integer("encoder.head.hidden")
    c.integer("encoder.head.batch_size")
    if c.get("encoder.head.standardize") not in (True, False, "validate"):
        fail(
            "encoder.head.standardize",
            c.get("encoder.head.standardize"),
            "true, false or validate (the user picks on a validation share of its training data)",
        )
    c.number("encoder.head.validation_fraction", 0.0, 1.0)


def _check_downstream(c: Checker, section: str, downstream: list[str]) -> None:
    """`<section>.target`, `.max_train` and `.head` against each downstream dataset of the section."""
    from sequela.datasets.sizes import NUM_CLASSES

    target, max_train = c.get(f"{section}.target"), c.get(f"{section}.max_train")
    for ds in downstream:
        if not is_int(target) or not 0 <= target < NUM_CLASSES[ds]:
            fail(
                f"{section}.target",
                target,
                f"an integer class label in [0, {NUM_CLASSES[ds] - 1}] for downstream dataset {ds}",
            )
        if max_train is not None and (not is_int(max_train) or max_train < 2 * NUM_CLASSES[ds]):
            fail(
                f"{section}.max_train",
                max_train,
                f"null or an integer of at least two images per class of {ds} ({2 * NUM_CLASSES[ds]})",
            )
    c.integer(f"{section}.head.epochs")
    c.number(f"{section}.head.lr", 0.0, INF)


def fit_images(x: torch.Tensor, channels: int, side: int) -> torch.Tensor:
    """uint8 images (N, C, H, W) as (N, channels, side, side): colour to grey by luma, grey to colour
    by repeating the channel, then an antialiased resize."""
    if x.shape[1] != channels:
        if channels == 1:
            weights = torch.tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1)
            x = (x.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        elif x.shape[1] == 1:
            x = x.repeat(1, channels, 1, 1)
        else:
            raise ValueError(f"cannot fit {x.shape[1]}-channel images to {channels} channels")
    return splits.resize(x, side)


def load_downstream(
    name: str, root: str, split_seed: int, test_fraction: float, channels: int, side: int, max_train: int | None
) -> Dataset:
    """The downstream dataset's official splits, fitted to the reused model's input. `max_train`
    keeps a stratified draw of at most that many training images (fixed by `split_seed`, as every
    data split is), so a large downstream set fits a CPU budget."""
    ds = loaders.load(name, root, split_seed, test_fraction)
    train = ds.train
    if max_train is not None and max_train < len(train):
        _, train = splits.carve(train, max_train / len(train), split_seed)
    fit = lambda s: Split(fit_images(s.x, channels, side), s.y)  # noqa: E731
    return Dataset(name, ds.classes, fit(train), fit(ds.test), f"{ds.source}; fitted to {channels}x{side}x{side}")


def class_key(name: str) -> str:
    """A class name as compared across label spaces: torchvision's MNIST calls digit 0 "0 - zero"."""
    return name.split(" - ")[0].strip().lower()


def downstream_target(
    upstream_classes: list[str], upstream_target: int, downstream_classes: list[str], fallback: int
) -> tuple[int, str]:
    """The downstream class the upstream trigger is meant to reach: the one of the same name where the
    label spaces share it (CIFAR-10 -> STL-10, MNIST -> digits), else `fallback` (`transfer.target`)."""
    wanted = class_key(upstream_classes[upstream_target])
    for index, name in enumerate(downstream_classes):
        if class_key(name) == wanted:
            return index, f"shared class {name!r}"
    return fallback, "transfer.target (no shared class)"


def train_head(
    model: models.Classifier,
    stream: BatchStream,
    epochs: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    on_epoch=None,
) -> float:
    """Train `model.fc` on the frozen backbone's features (cosine schedule); returns wall seconds.
    The backbone runs in eval mode under no_grad, so neither its weights nor its batch-norm
    statistics move."""
    head = list(model.fc.parameters())
    optimizer = SGD(head, lr=lr, momentum=momentum, weight_decay=weight_decay)

    def head_loss(m: models.Classifier, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        m.eval()
        with torch.no_grad():
            features = m.features(x)
        return F.cross_entropy(m.fc(features), y)

    return fit(
        model,
        stream,
        optimizer,
        cosine(lr, epochs * len(stream)),
        epochs,
        on_epoch=on_epoch,
        loss_fn=head_loss,
        desc="head",
    )


def curve_epochs(epochs: int, points: int = 10) -> set[int]:
    """At most `points` evenly spaced epochs (the last included) at which a long run is evaluated."""
    return {round(epochs * k / points) for k in range(1, points + 1)} if epochs > points else set(range(1, epochs + 1))


def train_head_on_features(
    model: models.Classifier, train: Split, head: dict, generator: torch.Generator, on_epoch=None
) -> float:
    """The encoder paradigm's downstream classifier, trained as BadEncoder's reference trains it:
    the frozen encoder embeds the training images once (no augmentation), and the head (MLP,
    optionally led by a FeatureNorm layer) is trained on the embeddings with Adam at a constant
    rate, `head.epochs` passes of `head.batch_size`. The encoder is never touched. `on_epoch(epoch,
    lr)` runs at the epochs of `curve_epochs`. Returns wall seconds."""
    start = time.perf_counter()
    features = predict_logits(model, train.x, float32=True, features=True)
    labels = train.y.to(features.device)
    optimizer = Adam(model.fc.parameters(), lr=head["lr"])
    record_at = curve_epochs(head["epochs"])
    for epoch in range(1, head["epochs"] + 1):
        model.fc.train()
        order = torch.randperm(len(features), generator=generator).to(features.device)
        for i in range(0, len(order), head["batch_size"]):
            rows = order[i : i + head["batch_size"]]
            loss = F.cross_entropy(model.fc(features[rows]), labels[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if on_epoch is not None and epoch in record_at:
            on_epoch(epoch, head["lr"])
    return time.perf_counter() - start


@dataclass
class Result:
    model: models.Classifier
    spec: dict  # models.build arguments of `model`
    figures: dict
    curve: list[dict]


@dataclass
class Cell:
    """What one downstream cell reads: the fitted data, the trigger and the settings."""

    ds: Dataset
    trigger: Attack
    target: int
    recipe: Recipe  # the reused model's recipe: defender batch and augmentation
    head: dict  # <paradigm>.head: epochs, lr (encoder: hidden, standardize, batch_size)
    defense: dict  # params.yaml `defense`: epochs, momentum, weight_decay, ft, sft
    device: torch.device
    seed: int
    curve_n: int  # test images per curve point
    on_features: bool = False  # the head trains on precomputed features (train_head_on_features)

    def evaluate(self, model: torch.nn.Module) -> dict:
        return evaluate(model, self.test, self.trigger, self.target)

    def __post_init__(self):
        self.test = self.ds.test.to(self.device)
        self.curve_test = self.ds.test.sample(self.curve_n, self.seed).to(self.device)

    def stream(self, batch_size: int, generator: torch.Generator) -> BatchStream:
        return BatchStream(
            self.ds.train.x,
            self.ds.train.y,
            batch_size,
            self.device,
            generator,
            augment=Augment(self.recipe.crop_padding, self.recipe.flip),
        )


def with_new_head(
    shipped: models.Classifier, spec: dict, num_classes: int, hidden: int | None, seed: int, standardize: bool = False
) -> tuple[models.Classifier, dict]:
    """A copy of the shipped model with a fresh, seeded head for `num_classes` downstream classes."""
    model = copy.deepcopy(shipped)
    torch.manual_seed(seed)
    model.replace_head(num_classes, hidden, standardize)
    return model, {**spec, "num_classes": num_classes, "head_hidden": hidden, "head_standardize": standardize}


def choose_standardize(cell: Cell, shipped: models.Classifier, spec: dict) -> tuple[bool, dict]:
    """The user's choice of a FeatureNorm layer in front of its head (`head.standardize: validate`):
    both heads train on the user's training data less a seeded `validation_fraction`, and the one
    with the higher accuracy on that held-out share is kept (ties: none). Only the user's own data is
    read. Returns (choice, each option's validation accuracy)."""
    fit_rows, held_rows = splits.carve(cell.ds.train, cell.head["validation_fraction"], cell.seed)
    accuracy = {}
    for option in (False, True):
        model, _ = with_new_head(shipped, spec, len(cell.ds.classes), cell.head.get("hidden"), cell.seed, option)
        train_head_on_features(model, fit_rows, cell.head, torch.Generator().manual_seed(cell.seed))
        accuracy[option] = clean_accuracy(model, held_rows.to(cell.device))
    return accuracy[True] > accuracy[False], {
        "validation_accuracy_plain": accuracy[False],
        "validation_accuracy_standardized": accuracy[True],
    }


def baseline(cell: Cell, shipped: models.Classifier, spec: dict) -> Result:
    """The usual practice: a new head on the frozen shipped backbone (the paradigm's "none")."""
    seed_everything(cell.seed)
    standardize, chosen_on = cell.head.get("standardize", False), {}
    if standardize == "validate":
        standardize, chosen_on = choose_standardize(cell, shipped, spec)
        seed_everything(cell.seed)
    model, spec = with_new_head(shipped, spec, len(cell.ds.classes), cell.head.get("hidden"), cell.seed, standardize)
    recorder = CurveRecorder(lambda m: evaluate(m, cell.curve_test, cell.trigger, cell.target))
    generator = torch.Generator().manual_seed(cell.seed)
    on_epoch = lambda epoch, lr: recorder.record(model, epoch, lr)  # noqa: E731
    if cell.on_features:
        seconds = train_head_on_features(model, cell.ds.train, cell.head, generator, on_epoch)
    else:
        seconds = train_head(
            model,
            cell.stream(cell.recipe.batch_size, generator),
            cell.head["epochs"],
            cell.head["lr"],
            cell.defense["momentum"],
            cell.defense["weight_decay"],
            on_epoch,
        )
    final = cell.evaluate(model)
    return Result(
        model,
        spec,
        {
            **final,
            "seconds": seconds - recorder.eval_seconds,
            "epochs": cell.head["epochs"],
            "n_train": len(cell.ds.train),
            **chosen_on,
        },
        recorder.rows,
    )


def fine_tuned(cell: Cell, start: Result, name: str) -> Result:
    """FT or SFT of the whole model (backbone + head) from the baseline's model, on the downstream
    data, with the standalone defenses' code and settings, through the defenses' own loop."""
    defended = Defended(
        backdoored=start.model,
        spec=start.spec,
        clean=cell.ds.train,
        train=cell.ds.train,
        poisoned=torch.empty(0, dtype=torch.long),
        attack=cell.trigger,
        target=cell.target,
        poison_rate=0.0,
        recipe=cell.recipe,
        device=cell.device,
        settings={**cell.defense, "clean_fraction": 1.0},  # the user holds its whole downstream set
        seed=cell.seed,
        test=cell.test,
        curve_test=cell.curve_test,
    )
    outcome = apply_defense(name, FINE_TUNING[name], defended)
    # The cell's figures keep the baseline's keys: the rows it trained on, no defender's share.
    figures = {"n_train" if k == "n_clean" else k: v for k, v in outcome.figures.items() if k != "clean_fraction"}
    return Result(outcome.model, start.spec, figures, outcome.curve)


def save(results: dict[str, Result], models_dir: Path, curves_dir: Path) -> None:
    """Each model under models_dir/<name>/ (weights + spec) and its curve as curves_dir/<name>.tsv."""
    for name, result in results.items():
        models.save(result.model, result.spec, Path(models_dir) / name)
        write_curve(result.curve, Path(curves_dir) / f"{name}.tsv")


def run(
    cell: Cell, shipped: tuple[models.Classifier, dict], clean: tuple[models.Classifier, dict]
) -> dict[str, Result]:
    """The cell's four models: "clean" (a head on the clean reference: the trigger's floor without a
    backdoor), "none" (a head on the shipped backdoored model), and FT and SFT from "none"."""
    results = {"clean": baseline(cell, *clean), "none": baseline(cell, *shipped)}
    for name in ("ft", "sft"):
        results[name] = fine_tuned(cell, results["none"], name)
    return results
