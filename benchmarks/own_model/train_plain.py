"""Train a backdoored classifier the plain way, outside the pipeline: the models of the own-model check.

    python benchmarks/own_model/train_plain.py --train train.npz --test test.npz --arch preact_resnet18 \
        --width 64 --epochs 30 --seed 0 --out outside/gtsrb-preact

The data are `.npz` files as `sequela folders` writes them (x: N x H x W x C uint8, y). BadNets as
BackdoorBench plants it: a fixed 10% of the training rows, drawn among those not of the target class,
get a 3 x 3 white patch in the bottom-right corner and the target label (class 0). The recipe is the
usual one for these networks: SGD lr 0.01, momentum 0.9, weight decay 5e-4, batch 128, cosine
annealing to 0, random crop with 4 pixels of padding, no flip (signs and digits are not symmetric).
Only the architecture comes from the project (`sequela.models.build`); the training loop, the trigger
and the data handling are this file's own.

Written under --out: weights.pt (the state dict, for `sequela convert`), normalization.json (the
per-channel mean and std for --mean / --std), triggered.npz (every test image not of the target,
patched, with its true label), poisons.npz (patched training images of other classes labelled with
the target: what the attacker injected) and trained.json (CA, ASR, epochs, seconds).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sequela import models

TARGET = 0
POISON_RATE = 0.1
PATCH = 3


def load(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(path) as f:
        x = torch.from_numpy(f["x"])
        y = torch.from_numpy(f["y"]).long()
    if x.dim() == 3:
        x = x[..., None]
    return x.permute(0, 3, 1, 2).float() / 255, y


def stamp(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x[:, :, -PATCH:, -PATCH:] = 1.0
    return x


def random_crop(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Each image of the batch shifted by its own offset within `pad` pixels, zeros where it left."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    return padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    hits = sum((model(x[i : i + 512]).argmax(1) == y[i : i + 512]).sum().item() for i in range(0, len(x), 512))
    return hits / len(x)


def save_npz(path: Path, x: torch.Tensor, y: torch.Tensor) -> None:
    images = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    with open(path, "wb") as handle:
        np.savez(handle, x=images, y=y.numpy())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=Path, required=True)
    p.add_argument("--test", type=Path, required=True)
    p.add_argument("--arch", default="preact_resnet18")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    x, y = load(args.train)
    x_test, y_test = load(args.test)
    num_classes = int(max(y.max(), y_test.max())) + 1

    others = (y != TARGET).nonzero().flatten()
    poisoned = others[torch.randperm(len(others), generator=gen)[: round(POISON_RATE * len(y))]]
    x_train, y_train = x.clone(), y.clone()
    x_train[poisoned], y_train[poisoned] = stamp(x[poisoned]), TARGET

    mean = x.mean(dim=(0, 2, 3)).tolist()
    std = x.std(dim=(0, 2, 3)).tolist()
    model = models.build(args.arch, x.shape[1], num_classes, mean, std, width=args.width)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    steps = args.epochs * -(-len(y) // 128)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 128):
            batch = order[i : i + 128]
            loss = F.cross_entropy(model(random_crop(x_train[batch], 4, gen)), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        print(f"epoch {epoch + 1}/{args.epochs} loss {loss.item():.3f} {time.perf_counter() - start:.0f} s", flush=True)
    seconds = time.perf_counter() - start

    victims = y_test != TARGET
    x_triggered = stamp(x_test[victims])
    ca, asr = accuracy(model, x_test, y_test), accuracy(model, x_triggered, torch.full_like(y_test[victims], TARGET))
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out / "weights.pt")
    (args.out / "normalization.json").write_text(json.dumps({"mean": mean, "std": std}) + "\n")
    save_npz(args.out / "triggered.npz", x_triggered, y_test[victims])
    save_npz(args.out / "poisons.npz", x_train[poisoned], y_train[poisoned])
    info = {
        "arch": args.arch,
        "width": args.width,
        "epochs": args.epochs,
        "seed": args.seed,
        "ca": ca,
        "asr": asr,
        "poison_rate": POISON_RATE,
        "n_train": len(y),
        "n_test": len(y_test),
        "seconds": seconds,
        "num_classes": num_classes,
        "input_shape": list(x.shape[1:]),
    }
    (args.out / "trained.json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info))


if __name__ == "__main__":
    main()
