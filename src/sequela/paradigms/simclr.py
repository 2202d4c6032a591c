"""SimCLR pre-training of an encoder on unlabelled images (Chen et al., 2020): the encoder-based
paradigm's clean encoder, which BadEncoder then backdoors.

Each image of a batch is augmented twice; a projection head maps the encoder's features to the
space where the NT-Xent loss pulls the two views of one image together and pushes the other
2N - 2 views of the batch away, at a temperature. The encoder is any `models.Classifier`: its
`features(x)` is the representation (the head `fc` is unused here).

The views are made on the device for the whole batch at once: a random resized crop and an optional
horizontal flip as one affine resampling per image, then per-image brightness and contrast jitter.
SimCLR's colour distortion also changes hue and saturation and sometimes drops colour; the digit
sets are grey, so this module keeps to brightness and contrast (a documented simplification).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sequela.datasets.splits import Split
from sequela.engine.batches import BatchStream
from sequela.engine.loop import fit
from sequela.engine.optimizers import sgd
from sequela.engine.schedules import cosine
from sequela.pipeline.checker import INF, Checker, fail, is_int


def check(c: Checker, key: str = "encoder.simclr") -> None:
    """The SimCLR pre-training section."""
    for name in ("epochs", "batch_size", "proj_dim"):
        c.integer(f"{key}.{name}")
    if c.get(f"{key}.batch_size") < 2:
        fail(f"{key}.batch_size", c.get(f"{key}.batch_size"), "an integer >= 2 (NT-Xent contrasts a batch's images)")
    max_images = c.get(f"{key}.max_images")
    if max_images is not None and (not is_int(max_images) or max_images < c.get(f"{key}.batch_size")):
        fail(
            f"{key}.max_images",
            max_images,
            f"null (every training image) or an integer >= {key}.batch_size ({c.get(f'{key}.batch_size')})",
        )
    c.number(f"{key}.lr", 0.0, INF)
    c.number(f"{key}.temperature", 0.0, INF)
    c.number(f"{key}.crop_min", 0.0, 1.0, high_open=False)
    c.boolean(f"{key}.flip")
    c.number(f"{key}.jitter", 0.0, 1.0, low_open=False, high_open=True)


def check_model(c: Checker) -> None:
    """`encoder.model`: null (the pre-training dataset's recipe model) or {arch, width}."""
    from sequela.models import ARCHITECTURES

    model = c.get("encoder.model")
    if model is None:
        return
    if not isinstance(model, dict) or set(model) != {"arch", "width"}:
        fail("encoder.model", model, "null or a mapping with keys arch and width")
    c.choice("encoder.model.arch", tuple(ARCHITECTURES))
    c.integer("encoder.model.width")


def pretraining_set(train: Split, max_images: int | None, seed: int) -> Split:
    """The images SimCLR trains on: the whole training split, or a seeded `max_images` of it. The
    BadEncoder attacker draws its unlabelled set from the same images."""
    return train if max_images is None else train.sample(max_images, seed)


@dataclass
class Views:
    """The augmentation that makes one view: crop area in [crop_min, 1] of the image, aspect ratio
    in [3/4, 4/3], flip with probability 1/2 if `flip`, brightness and contrast jitter of +-`jitter`."""

    crop_min: float = 0.3
    flip: bool = False
    jitter: float = 0.4

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = len(x)
        u = lambda: torch.rand(n, generator=generator).to(x.device)  # noqa: E731
        area = self.crop_min + (1 - self.crop_min) * u()
        log_ratio = (u() * 2 - 1) * torch.log(torch.tensor(4 / 3))
        sx = (area * log_ratio.exp()).sqrt().clamp(max=1.0)  # crop width / image width
        sy = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
        tx, ty = (u() * 2 - 1) * (1 - sx), (u() * 2 - 1) * (1 - sy)
        if self.flip:
            sx = torch.where(u() < 0.5, -sx, sx)
        theta = torch.zeros(n, 2, 3, device=x.device)
        theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, tx, sy, ty
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        brightness = (u() * 2 - 1) * self.jitter
        contrast = 1 + (u() * 2 - 1) * self.jitter
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * contrast.view(-1, 1, 1, 1) + mean + brightness.view(-1, 1, 1, 1) * 0.5
        return x.clamp(0, 1)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent: for each of the 2N views, cross-entropy of picking its partner among the other 2N - 1
    views by cosine similarity / temperature."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = len(z1)
    logits = z @ z.t() / temperature
    logits.fill_diagonal_(float("-inf"))  # a view is not its own partner
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, partner)


class Pretraining(nn.Module):
    """The encoder and its projection head (width -> width -> proj_dim), trained together."""

    def __init__(self, encoder: nn.Module, width: int, proj_dim: int):
        super().__init__()
        self.encoder = encoder
        self.projection = nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, proj_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.encoder.features(x))


def pretrain(
    encoder: nn.Module,
    images: torch.Tensor,
    views: Views,
    epochs: int,
    batch_size: int,
    lr: float,
    temperature: float,
    proj_dim: int,
    device: torch.device,
    seed: int,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
) -> tuple[list[float], float]:
    """Train `encoder` in place by SimCLR on uint8 `images`; returns (mean loss per epoch, seconds).
    SGD with momentum and a cosine schedule (SimCLR's LARS matters at batch sizes in the thousands)."""
    torch.manual_seed(seed)  # the projection head's initialisation
    model = Pretraining(encoder, encoder.width, proj_dim).to(device)
    generator = torch.Generator().manual_seed(seed)
    labels = torch.zeros(len(images), dtype=torch.long)  # unlabelled: the stream carries dummies
    stream = BatchStream(images, labels, batch_size, device, generator)
    losses: list[float] = []
    batch_losses: list[torch.Tensor] = []  # kept on the device: no host sync per step

    def loss_fn(m: Pretraining, x: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
        loss = nt_xent(m(views(x, generator)), m(views(x, generator)), temperature)
        batch_losses.append(loss.detach())
        return loss

    def on_epoch(epoch: int, lr_: float) -> None:
        losses.append(torch.stack(batch_losses).mean().item())
        batch_losses.clear()

    optimizer = sgd(model, lr, momentum, weight_decay)
    seconds = fit(
        model,
        stream,
        optimizer,
        cosine(lr, epochs * len(stream)),
        epochs,
        on_epoch=on_epoch,
        loss_fn=loss_fn,
        desc="simclr",
    )
    return losses, seconds


@torch.no_grad()
def embed(encoder: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """L2-normalised features of float images in [0, 1], in eval mode."""
    was = encoder.training
    encoder.eval()
    out = torch.cat(
        [F.normalize(encoder.features(x[i : i + batch_size]).float(), dim=1) for i in range(0, len(x), batch_size)]
    )
    encoder.train(was)
    return out
