"""Mini-batches without a DataLoader.

Datasets in this field fit in memory, so there is no per-sample DataLoader: the uint8 images sit on
the device, a batch is one index gather, and the poison trigger, random crop and flip are batched
tensor ops on that device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F


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

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        device: torch.device,
        generator: torch.Generator,
        shuffle: bool = True,
        augment: Augment | None = None,
        attack=None,
        poisoned: torch.Tensor | None = None,
        target: int = 0,
        plain: torch.Tensor | None = None,
        relabel: bool = True,
        share: float | None = None,
    ):
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
            idx = order[start : start + self.batch_size]
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
