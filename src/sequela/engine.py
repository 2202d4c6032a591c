"""The training and evaluation loop every stage shares.

Datasets in this field fit in memory, so there is no per-sample DataLoader: the uint8 images sit on
the device, a batch is one index gather, and the poison trigger, random crop and flip are batched
tensor ops on that device. On CUDA the model runs channels_last under bf16 autocast; on a CPU the
same code runs in float32, or under bf16 autocast where the recipe asks for it (`cpu_bf16`), and, for
a given seed and thread count, gives identical results.
"""

from __future__ import annotations

import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from sequela import progress
from sequela.schedules import Schedule


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# Set once per stage from the recipe (`use_cpu_bf16`), before any forked worker starts, so that every
# forward pass of the stage (training, defenses, evaluation) runs at the same precision.
_CPU_BF16 = False


def use_cpu_bf16(enabled: bool) -> None:
    """Run CPU forward passes under bf16 autocast too. Worth it only on CPUs with bf16 instructions
    (AMX on Intel: 2.1-2.7x per training step of compact_cnn; AVX512-BF16 on AMD: 1.8x;
    benchmarks/compact_cnn.py); without them bf16 is slower than float32. The weights, the optimiser
    and the loss stay float32."""
    global _CPU_BF16
    _CPU_BF16 = bool(enabled)


def autocast(device: torch.device):
    """bf16 autocast on CUDA, and on a CPU where the recipe asks for it; float32 otherwise."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if _CPU_BF16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


@dataclass
class Augment:
    """Random crop after zero padding by `crop_padding` pixels, and horizontal flip."""

    crop_padding: int = 0
    flip: bool = False

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, _, h, w = x.shape
        if self.crop_padding > 0:
            p = self.crop_padding
            padded = F.pad(x, (p, p, p, p))
            # One gather crops every image at its own offset: rows[i] = dy[i] + 0..h-1, same for cols.
            dy = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device)
            dx = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device)
            rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
            batch = torch.arange(n, device=x.device)[:, None, None, None]
            chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
            x = padded[batch, chans, rows, cols]
        if self.flip:
            flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x


class BatchStream:
    """Shuffled mini-batches of float images in [0, 1] from uint8 tensors held on the device.

    If `attack` is given, poisoning happens before augmentation, by the attack's schedule
    (attacks/base.py). "fixed": rows whose index is in `poisoned` are passed through the attack's
    `poison_batch` (trigger + target label), exactly as if the attacker had shipped a poisoned
    dataset. "per_batch" (WaNet, InputAware, as their references train): every batch is poisoned
    afresh by `poison_fresh`, at the share `poisoned` holds of the rows (len(poisoned) / N) unless
    `share` gives it, which rows and how many drawn with the stream's generator; `poisoned` only sets
    that share. A caller
    that needs the stored rows of a per-batch attack passes `attack.as_dataset()`. With
    `relabel=False` the rows in `poisoned` only carry the trigger (`attack.apply`) and keep their
    true labels, and no other row changes (exact purification's triggered rows), whatever the
    schedule. Rows flagged in `plain` are never augmented (the retuning attack's few poisoned images
    are fed as they are)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device,
                 generator: torch.Generator, shuffle: bool = True, augment: Augment | None = None,
                 attack=None, poisoned: torch.Tensor | None = None, target: int = 0,
                 plain: torch.Tensor | None = None, relabel: bool = True, share: float | None = None):
        self.x, self.y = x.to(device), y.to(device)
        self.plain = plain.to(device) if plain is not None else None
        self.batch_size, self.device, self.generator = batch_size, device, generator
        self.shuffle, self.augment = shuffle, augment
        self.attack, self.target, self.relabel = attack, target, relabel
        self.poisoned = None
        if attack is not None:
            flags = torch.zeros(len(y), dtype=torch.bool)
            flags[poisoned.cpu()] = True
            self.poisoned = flags.to(device)
        # The per-batch schedule's share of triggered rows; None: the stored rows are poisoned.
        self.fresh_share = None
        if attack is not None and relabel and getattr(attack, "schedule", "fixed") == "per_batch" and len(y):
            self.fresh_share = share if share is not None else len(poisoned) / len(y)

    def __len__(self) -> int:
        return (len(self.y) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.y)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(self.device)
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            xb = self.x[idx].float().div_(255.0)
            yb = self.y[idx]
            if self.fresh_share is not None:
                if self.fresh_share > 0:
                    xb, yb = self.attack.poison_fresh(xb, yb, self.fresh_share, self.target, self.generator)
            elif self.attack is not None:
                flags = self.poisoned[idx]
                if self.relabel:
                    xb, yb = self.attack.poison_batch(xb, yb, flags, self.target, self.generator)
                elif bool(flags.any()):
                    xb[flags] = self.attack.apply(xb[flags])
            if self.augment is not None:
                raw, xb = xb, self.augment(xb, self.generator)
                if self.plain is not None:
                    xb = torch.where(self.plain[idx][:, None, None, None], raw, xb)
            if self.device.type == "cuda":
                xb = xb.contiguous(memory_format=torch.channels_last)
            yield xb, yb


class SGD:
    """SGD with momentum and L2 weight decay, the same update as torch.optim.SGD (dampening 0,
    no Nesterov): d = g + wd * w; b = momentum * b + d (b = d at the first step); w -= lr * b.

    Written out because torch.optim's first step imports torch._dynamo, about 3 s of CPU per
    process: on digits that is more than a whole stage's training. Exposes `param_groups` so the
    engine sets the learning rate the same way."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4):
        self.param_groups = [{"params": [p for p in params if p.requires_grad], "lr": lr,
                              "momentum": momentum, "weight_decay": weight_decay}]
        self.buffers: dict[torch.nn.Parameter, torch.Tensor] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad
                if group["momentum"]:
                    buf = self.buffers.get(p)
                    if buf is None:
                        buf = self.buffers[p] = d.clone()
                    else:
                        buf.mul_(group["momentum"]).add_(d)
                    d = buf
                p.add_(d, alpha=-group["lr"])


class Adam:
    """Adam without weight decay, the same update as torch.optim.Adam: m = b1 m + (1 - b1) g,
    v = b2 v + (1 - b2) g^2, w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).

    Written out for the reason SGD is: constructing torch.optim.Adam imports torch._dynamo (1.7 s
    per process), paid by every defend stage for Neural Cleanse's trigger search."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.eps, self.t = lr, betas, eps, 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        self.t += 1
        step_size = self.lr / (1 - b1**self.t)
        correction2 = (1 - b2**self.t) ** 0.5
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            m.lerp_(p.grad, 1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            p.addcdiv_(m, (v.sqrt() / correction2).add_(self.eps), value=-step_size)


def sgd(model: torch.nn.Module, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4) -> SGD:
    return SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


LossFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def fit(model: torch.nn.Module, stream: BatchStream, optimizer: SGD, schedule: Schedule,
        epochs: int, on_epoch: Callable[[int, float], None] | None = None, loss_fn: LossFn = cross_entropy_loss,
        desc: str = "train") -> float:
    """Train for `epochs` passes over `stream`, setting the learning rate from `schedule` before
    every step. `on_epoch(epoch, mean_lr)` runs after each epoch (epochs count from 1).
    Returns the wall seconds spent, evaluation callbacks included."""
    device = stream.device
    start, step = time.perf_counter(), 0
    bar = progress.bar(epochs * len(stream), desc)  # one bar for the whole run
    for epoch in range(1, epochs + 1):
        model.train()
        lrs = []
        for xb, yb in stream:
            lr = schedule(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with autocast(device):
                loss = loss_fn(model, xb, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            lrs.append(lr)
            step += 1
            bar.update()
        if on_epoch is not None:
            on_epoch(epoch, sum(lrs) / len(lrs))
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 512,
            transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Predicted labels for uint8 images `x`, optionally transformed (e.g. triggered) per batch."""
    return predict_logits(model, x, batch_size, transform).argmax(1)


@torch.no_grad()
def predict_logits(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 512,
                   transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   float32: bool = False, features: bool = False) -> torch.Tensor:
    """Logits for uint8 images `x`. `float32=True` runs the whole forward pass in float32 even on
    CUDA: membership scores live in the last bits of a confident softmax, which bf16 rounds away.
    `features=True`: the penultimate features (`model.features`) instead of the logits."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    forward = model.features if features else model
    out = []
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size].to(device).float().div_(255.0)
        if transform is not None:
            xb = transform(xb)
        if device.type == "cuda":
            xb = xb.contiguous(memory_format=torch.channels_last)
        with nullcontext() if float32 else autocast(device):
            out.append(forward(xb).float())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, device=device)
