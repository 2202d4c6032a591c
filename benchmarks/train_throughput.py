"""Training throughput of ResNet-18 (CIFAR stem) on 32x32x3 images: this project's engine against a
BackdoorBench-style loop, on the same device, model and batch.

- **engine**: uint8 images resident on the device, one gather per batch, the BadNets trigger, random
  crop and flip as batched tensor ops (`sequela.engine.batches.BatchStream`); on CUDA bf16 autocast and
  channels_last; optionally `torch.compile` (its compile time is reported apart, and inductor's
  on-disk cache, `TORCHINDUCTOR_CACHE_DIR`, spares later processes most of it).
- **per-sample**: a torch `Dataset` that turns one uint8 array into a PIL image, stamps the trigger
  on that sample, runs RandomCrop, RandomHorizontalFlip and ToTensor, then a `DataLoader` with
  workers; float32, NCHW, torch.optim.SGD.

The data is synthetic uint8 noise of CIFAR-10's shape (50,000 x 3 x 32 x 32, 10 classes, 10%
poisoned): throughput does not depend on what the pixels show. Each measurement trains one epoch
after `--warmup` steps and reports images per second. Run by hand, not in the test suite:

    uv run python benchmarks/train_throughput.py                        # CUDA if present, batch 128 and 512
    uv run python benchmarks/train_throughput.py --compile --json out.json
    uv run python benchmarks/train_throughput.py --smoke                # seconds on a CPU (CI checks it starts)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time

import numpy as np
import torch
import torch.nn.functional as F

from sequela import models
from sequela.attacks.base import choose_poison_indices
from sequela.attacks.blend import BadNets
from sequela.engine.batches import Augment, BatchStream
from sequela.engine.device import autocast, pick_device, prepare_model
from sequela.engine.optimizers import sgd

MEAN, STD = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]


def synthetic(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.randint(
        0, 10, (n,), generator=g
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def engine_rate(x, y, batch: int, device: torch.device, width: int, warmup: int, compile_model: bool) -> dict:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    attack = BadNets.create({"size": 3}, x, y, 0, g).to(device)
    poisoned = choose_poison_indices(y, 0, 0.1, g)
    stream = BatchStream(x, y, batch, device, g, augment=Augment(4, True), attack=attack, poisoned=poisoned)
    model = prepare_model(models.build("resnet18", 3, 10, MEAN, STD, width), device)
    net = torch.compile(model) if compile_model else model
    optimizer = sgd(model, 0.01)
    model.train()

    def step(xb, yb):
        with autocast(device):
            loss = F.cross_entropy(net(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    batches = iter(stream)
    start = time.perf_counter()
    for _ in range(warmup):  # the first steps pay for compilation and cuDNN's autotuning
        step(*next(batches))
    sync(device)
    first = time.perf_counter() - start
    seen, start = 0, time.perf_counter()
    for xb, yb in stream:
        step(xb, yb)
        seen += len(yb)
    sync(device)
    return {
        "loop": "engine" + (" + compile" if compile_model else ""),
        "batch": batch,
        "img_per_s": seen / (time.perf_counter() - start),
        "warmup_s": first,
    }


class PerSample(torch.utils.data.Dataset):
    """BackdoorBench's way: PIL per sample, the trigger stamped per sample, torchvision transforms."""

    def __init__(self, x: np.ndarray, y: np.ndarray, poisoned: set[int]):
        import torchvision.transforms as T

        self.x, self.y, self.poisoned = x, y, poisoned
        self.transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor()])

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        from PIL import Image

        image, label = self.x[i], int(self.y[i])
        if i in self.poisoned:
            image = image.copy()
            image[-3:, -3:, :] = 255  # the 3x3 white square, bottom-right
            label = 0
        return self.transform(Image.fromarray(image)), label


def per_sample_rate(x, y, batch: int, device: torch.device, width: int, warmup: int, workers: int) -> dict:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    poisoned = set(choose_poison_indices(y, 0, 0.1, g).tolist())
    dataset = PerSample(x.permute(0, 2, 3, 1).contiguous().numpy(), y.numpy(), poisoned)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=False,
        persistent_workers=workers > 0,
    )
    model = models.build("resnet18", 3, 10, MEAN, STD, width).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    model.train()

    def step(xb, yb):
        loss = F.cross_entropy(model(xb.to(device, non_blocking=True)), yb.to(device, non_blocking=True))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    batches = iter(loader)
    for _ in range(warmup):
        step(*next(batches))
    sync(device)
    seen, start = 0, time.perf_counter()
    for xb, yb in loader:
        step(xb, yb)
        seen += len(yb)
    sync(device)
    return {
        "loop": f"per-sample ({workers} workers)",
        "batch": batch,
        "img_per_s": seen / (time.perf_counter() - start),
        "warmup_s": None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--n", type=int, default=50_000, help="synthetic images per epoch")
    parser.add_argument("--width", type=int, default=64, help="ResNet-18's first width (64: the real one)")
    parser.add_argument("--warmup", type=int, default=20, help="steps before the timed epoch")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="DataLoader workers")
    parser.add_argument("--compile", action="store_true", help="also time the engine under torch.compile")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that both loops run")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()
    if args.smoke:
        args.n, args.width, args.warmup, args.batch_sizes, args.workers = 64, 4, 1, [32], 0
    device = pick_device(args.device)
    x, y = synthetic(args.n)
    rows = []
    for batch in args.batch_sizes:
        rows.append(per_sample_rate(x, y, batch, device, args.width, args.warmup, args.workers))
        rows.append(engine_rate(x, y, batch, device, args.width, args.warmup, False))
        if args.compile:
            rows.append(engine_rate(x, y, batch, device, args.width, args.warmup, True))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"ResNet-18 (width {args.width}), {args.n} synthetic 32x32x3 images, {name}, commit {commit}")
    print("| loop | batch | img/s | x per-sample | first steps (s) |\n|---|---|---|---|---|")
    for row in rows:
        base = next(r["img_per_s"] for r in rows if r["batch"] == row["batch"] and r["loop"].startswith("per-sample"))
        warm = f"{row['warmup_s']:.1f}" if row["warmup_s"] is not None else "–"
        print(f"| {row['loop']} | {row['batch']} | {row['img_per_s']:,.0f} | {row['img_per_s'] / base:.1f} | {warm} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "commit": commit, "width": args.width, "n": args.n, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
