"""The training and evaluation loop every stage shares: `fit` runs epochs of a batch stream under a
learning-rate schedule; `predict` and `predict_logits` evaluate uint8 images batch by batch."""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Callable

import torch
import torch.nn.functional as F

from sequela.engine.batches import BatchStream
from sequela.engine.device import autocast
from sequela.engine.optimizers import SGD
from sequela.engine.schedules import Schedule
from sequela.pipeline import progress

LossFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def fit(
    model: torch.nn.Module,
    stream: BatchStream,
    optimizer: SGD,
    schedule: Schedule,
    epochs: int,
    on_epoch: Callable[[int, float], None] | None = None,
    loss_fn: LossFn = cross_entropy_loss,
    desc: str = "train",
) -> float:
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
def predict(
    model: torch.nn.Module,
    x: torch.Tensor,
    batch_size: int = 512,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Predicted labels for uint8 images `x`, optionally transformed (e.g. triggered) per batch."""
    return predict_logits(model, x, batch_size, transform).argmax(1)


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    x: torch.Tensor,
    batch_size: int = 512,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    float32: bool = False,
    features: bool = False,
) -> torch.Tensor:
    """Logits for uint8 images `x`. `float32=True` runs the whole forward pass in float32 even on
    CUDA: membership scores live in the last bits of a confident softmax, which bf16 rounds away.
    `features=True`: the penultimate features (`model.features`) instead of the logits."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    forward = model.features if features else model
    out = []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(device).float().div_(255.0)
        if transform is not None:
            xb = transform(xb)
        if device.type == "cuda":
            xb = xb.contiguous(memory_format=torch.channels_last)
        with nullcontext() if float32 else autocast(device):
            out.append(forward(xb).float())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, device=device)
