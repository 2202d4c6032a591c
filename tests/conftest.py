"""Shared fixtures: tiny synthetic data and a planted backdoor, all on the CPU."""

from __future__ import annotations

import os

# The suite runs on two xdist workers, and its pipeline tests start stage processes beside them:
# with torch's default of one OpenMP thread per core in every process, the threads spin against each
# other (the whole suite took 364 s instead of 177 s on a 2-core machine). One thread per process,
# inherited by every subprocess; a value already set in the environment is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch  # noqa: E402

from sequela import models
from sequela.attacks.registry import ATTACKS, choose_poison_indices
from sequela.datasets.splits import Split
from sequela.engine.batches import Augment, BatchStream
from sequela.engine.device import seed_everything
from sequela.engine.loop import fit
from sequela.engine.optimizers import sgd
from sequela.engine.schedules import cosine
from sequela.sources import loaders


def without_seconds(obj):
    """A cell's figures with every wall-clock time left out, at any depth: what a rerun must repeat."""
    if isinstance(obj, dict):
        return {k: without_seconds(v) for k, v in obj.items() if not k.endswith("seconds")}
    if isinstance(obj, list):
        return [without_seconds(v) for v in obj]
    return obj


def make_blobs(n: int, num_classes: int = 4, size: int = 12, seed: int = 0) -> Split:
    """Easy images: class c lights up the c-th horizontal band, plus noise. uint8 (N, 1, H, W)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % num_classes
    x = torch.rand(n, 1, size, size, generator=g) * 60
    band = size // num_classes
    for c in range(num_classes):
        x[y == c, :, c * band : (c + 1) * band, : size - 4] += 150
    return Split(x.clamp(0, 255).to(torch.uint8), y.to(torch.int64))


@pytest.fixture(scope="session")
def planted():
    """A small CNN with a planted BadNets backdoor (target 0) on blob data, trained once per session."""
    seed_everything(0)
    train, test = make_blobs(800, seed=0), make_blobs(200, seed=1)
    g = torch.Generator().manual_seed(0)
    attack = ATTACKS["badnets"].create({"size": 3}, train.x, train.y, 0, g)
    poisoned = choose_poison_indices(train.y, 0, 0.1, g)
    model = models.build("small_cnn", 1, 4, [0.2], [0.25], width=8)
    stream = BatchStream(
        train.x,
        train.y,
        32,
        torch.device("cpu"),
        g,
        augment=Augment(1, False),
        attack=attack,
        poisoned=poisoned,
        target=0,
    )
    fit(model, stream, sgd(model, 0.05), cosine(0.05, 15 * len(stream)), 15)
    return {"model": model, "train": train, "test": test, "attack": attack, "poisoned": poisoned, "target": 0}


@pytest.fixture(scope="session")
def planted_digits():
    """Like `planted`, on scikit-learn's digits (10 classes, 16x16, no network): real enough for
    the defenses whose statistics need many classes (NC's MAD test) or a clean task that is not
    learned faster than the trigger (ABL), and still trained in seconds."""

    seed_everything(0)
    ds = loaders.load_digits(seed=0, test_fraction=0.25)
    g = torch.Generator().manual_seed(0)
    attack = ATTACKS["badnets"].create({"size": 3}, ds.train.x, ds.train.y, 0, g)
    poisoned = choose_poison_indices(ds.train.y, 0, 0.1, g)
    mean, std = ds.channel_stats()
    spec = {
        "arch": "small_cnn",
        "in_channels": 1,
        "num_classes": 10,
        "mean": mean,
        "std": std,
        "width": 8,
        "input_shape": list(ds.image_shape),
    }
    model = models.build_from_spec(spec)
    stream = BatchStream(
        ds.train.x,
        ds.train.y,
        32,
        torch.device("cpu"),
        g,
        augment=Augment(1, False),
        attack=attack,
        poisoned=poisoned,
        target=0,
    )
    fit(model, stream, sgd(model, 0.05), cosine(0.05, 15 * len(stream)), 15)
    return {
        "model": model,
        "train": ds.train,
        "test": ds.test,
        "attack": attack,
        "poisoned": poisoned,
        "target": 0,
        "spec": spec,
    }
