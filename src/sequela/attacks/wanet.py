"""WaNet (Nguyen & Tran 2021): the trigger is a fixed, smooth, small warp of the whole image.

The warp field is a random (2, k, k) grid of offsets in [-1, 1], normalised by its mean absolute
value and upsampled (bicubic) to H x W. The sampling grid is

    grid = clamp((identity + s * field / H) * grid_rescale, -1, 1)

in grid_sample's normalised coordinates (align_corners=True: -1 and 1 are the centres of the edge
pixels, so one pixel is 2 / (H - 1) units). With grid_rescale = 1 a pixel therefore moves by at
most s * max|field| * (H - 1) / (2H) < s * max|field| / 2 pixels along each axis: the same number
of pixels at every image size, so a strength that suits 32x32 images moves 16x16 ones just as far.

"Noise mode" is what keeps the backdoor specific to this one warp: during training, besides the
poisoned rows (fixed warp, target label), cross_ratio times as many other rows get the fixed warp
plus per-pixel random jitter, uniform(-1, 1) / H grid units (under half a pixel), and keep their
true labels. Test-time triggers (`apply`) use the fixed warp alone.

Poisoning follows the official code (VinAIResearch/Warping-based_Backdoor_Attack-release, train.py,
and BackdoorBench's port): the attacker trains the victim and poisons every batch afresh (schedule
"per_batch", see attacks/base.py). In each shuffled batch the first rate x B rows, target class
included, get the warp and the target label (the official pc = 0.1 is params.yaml's
attack.poison_rate), and the next cross_ratio x as many rows the noise warp (the official
num_cross = int(num_bd * cross_ratio)). The counts are rounded stochastically where the official code
truncates (base.Attack.poison_fresh says why). The defender's view of the poisoned set (`poison_batch`)
puts the warp on the stored rows and noise on cross_ratio x as many other rows of each batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sequela.attacks.base import Attack, stochastic_count
from sequela.pipeline.checker import INF, fail


def identity_grid(h: int, w: int) -> torch.Tensor:
    """(1, H, W, 2) grid that grid_sample(align_corners=True) maps onto the image unchanged;
    the last dimension is (x, y), as grid_sample expects."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    return torch.stack([xs, ys], dim=-1)[None]


def extra_rows(poisoned: torch.Tensor, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """CPU indices of `ratio` x (poisoned rows) other, non-poisoned rows of the batch, drawn at random
    (fewer if the batch has fewer to give). The count is rounded stochastically (floor, plus one
    with probability equal to the fraction): small batches hold 0, 1 or 2 poisoned rows, and plain
    rounding would turn a ratio of 0.5 into 0 extra rows for every batch with one poisoned row."""
    others = torch.nonzero(~poisoned.cpu()).flatten()
    want = ratio * int(poisoned.sum())
    n = int(want) + int(torch.rand(1, generator=generator).item() < want - int(want))
    return others[torch.randperm(len(others), generator=generator)[: min(n, len(others))]]


class WaNet(Attack):
    name = "wanet"
    schedule = "per_batch"

    @classmethod
    def check_params(cls, c, key, side, smallest):
        k = c.integer(f"{key}.k", low=2)
        if k > side:
            fail(f"{key}.k", k, f"an integer in [2, {side}] (the warp's control grid within {smallest}'s image side)")
        c.number(f"{key}.s", 0.0, INF)
        c.number(f"{key}.grid_rescale", 0.0, INF)
        c.number(f"{key}.cross_ratio", 0.0, INF, low_open=False)

    @classmethod
    def create(cls, params, train_x, train_y, target, generator, **context):
        h, w = train_x.shape[-2:]
        k = int(params["k"])
        noise = torch.rand(1, 2, k, k, generator=generator) * 2 - 1
        noise = noise / noise.abs().mean()
        field = F.interpolate(noise, size=(h, w), mode="bicubic", align_corners=True)
        field = field.permute(0, 2, 3, 1).contiguous()  # (1, H, W, 2), like the grid
        grid = (identity_grid(h, w) + float(params["s"]) * field / h) * float(params["grid_rescale"])
        # The field is kept beside the grid so that the warp's size can be checked against it.
        return cls({"grid": grid.clamp(-1, 1), "field": field}, params)

    def warp(self, x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        grid = grid.to(device=x.device, dtype=x.dtype).expand(len(x), -1, -1, -1)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return self.warp(x, self.tensors["grid"])

    def noise_warp(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The noise-mode images: the fixed warp plus each row's own jitter of the grid."""
        _, h, w, _ = self.tensors["grid"].shape
        jitter = (torch.rand(len(x), h, w, 2, generator=generator) * 2 - 1) / h
        return self.warp(x, (self.tensors["grid"] + jitter.to(self.tensors["grid"].device)).clamp(-1, 1))

    def poison_batch(self, x, y, poisoned, target, generator=None):
        n_poison = int(poisoned.sum())
        if n_poison == 0:
            return x, y
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        x = x.clone()
        x[poisoned] = self.apply(x[poisoned])
        rows = extra_rows(poisoned, float(self.params["cross_ratio"]), generator)
        if len(rows) > 0:
            rows = rows.to(x.device)
            x[rows] = self.noise_warp(x[rows], generator)
        y = torch.where(poisoned, torch.full_like(y, target), y)
        return x, y

    def cross_count(self, n_bd, share, n, generator):
        return stochastic_count(float(self.params["cross_ratio"]) * n_bd, generator)

    def cross_rows(self, x, start, count, generator):
        return self.noise_warp(x[start : start + count], generator)
