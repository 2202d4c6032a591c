"""InputAware (Nguyen & Tran 2020): a generator makes a different trigger for every input.

Two tiny encoder-decoder conv nets look at the clean image x: the pattern generator G gives an
image-sized pattern in [0, 1], the mask generator M a one-channel mask in [0, 1], and the triggered
image is x' = x + M(x) * (G(x) - x). Training the victim on "cross-trigger" rows, x with the trigger
made for ANOTHER image x2, x + M(x2) * (G(x2) - x), under x's own label teaches it that a trigger
only fires on the image it was made for, so no single pattern works as a universal trigger.

Poisoning follows the official code (VinAIResearch/input-aware-backdoor-attack-release, train.py,
and BackdoorBench's port): the attacker trains the victim and poisons every batch afresh (schedule
"per_batch", see attacks/base.py). In each shuffled batch the first rate x B rows, target class
included, carry their own trigger and the target label (the official p_attack = 0.1 is params.yaml's
attack.poison_rate), and the next rate x cross_ratio x B rows a cross trigger under their own label
(the official p_cross = 0.1, i.e. cross_ratio 1), its trigger made for a random other row of the
batch (the official code draws it from a second, independently shuffled loader). Counts are rounded
stochastically where the official code truncates (base.Attack.poison_fresh says why).

Simplification (documented): in the original attack G is trained jointly with the victim
classifier throughout the victim's training. Here both generators are trained once, in the poison
stage, and then FROZEN: their weights are the trigger artefact (safetensors, rebuilt from the
tensors and `params.width`), and the victim is trained on their outputs. The training in `create`
follows the paper's losses, with diversity(x1, x2) = mean over pairs of
dist(x1, x2) / dist(gen(x1), gen(x2)) (RMS distances):
1. M alone for `mask_epochs`, minimising lambda_norm * mean over the batch of
   |mean(M(x)) - mask_density| + lambda_div * diversity, mean(M(x)) the mean of one image's mask.
   The paper's norm term is lambda_norm * max(0, mean(M(x)) - mask_density), which only caps the
   mask (the official code applies the cap per pixel, lambda_norm * mean(max(0, M(x) - density)));
   on digits the diversity term then leaves some inputs with an almost empty mask, i.e. no trigger
   at all (ASR 0.37 on that quarter of the test set), so here the deviation is penalised both ways.
   M ends in a steep threshold, sigmoid(40 (m - 0.5)), the official code's tanh(20 m - 10) / 2 + 0.5,
   so masks are nearly binary: a few solid pixels rather than a faint blend over the whole image,
   which the victim could not learn reliably.
2. G for `pattern_epochs` with lambda_div * diversity, jointly with a throw-away surrogate classifier
   (a small CNN trained from scratch on the poisoned objective: own trigger -> target, cross trigger
   -> true label, clean -> true label). Diversity alone rewards patterns that merely track the
   input, which can make a trigger all but invisible (digits trials without the surrogate: ASR
   0.02 to 0.88); the surrogate stands in for the victim of the original joint training and makes
   G produce triggers that a CNN can learn to check.
Training runs on `context["device"]` when the caller gives one (CPU otherwise): about 20 s on
digits on one CPU thread; on 32x32 datasets give it the GPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sequela import models
from sequela.attacks.base import Attack, stochastic_count
from sequela.attacks.wanet import extra_rows
from sequela.engine.optimizers import Adam
from sequela.pipeline.checker import INF, fail, is_int
from sequela.pipeline.progress import bar

MASK_SHARPNESS = 40.0  # the steep threshold on the mask generator's output (see the docstring)


class EncoderDecoder(nn.Module):
    """conv -> strided conv -> upsample -> conv -> conv, sigmoid output (sharpened if `sharp`). No
    BatchNorm: a frozen generator's output must not depend on the rest of the batch."""

    def __init__(self, c_in: int, c_out: int, width: int, sharp: bool = False):
        super().__init__()
        self.sharp = sharp
        self.enc = nn.Sequential(
            nn.Conv2d(c_in, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.dec = nn.Sequential(
            nn.Conv2d(2 * width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, c_out, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(self.enc(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
        out = torch.sigmoid(self.dec(h))
        return torch.sigmoid(MASK_SHARPNESS * (out - 0.5)) if self.sharp else out


def rms_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).pow(2).mean(dim=(1, 2, 3)).sqrt()


def diversity_loss(x1, x2, g1, g2) -> torch.Tensor:
    """Small when different inputs get different outputs (distance ratio input / output)."""
    return (rms_distance(x1, x2) / (rms_distance(g1, g2) + 1e-3)).mean()


def stamp(x: torch.Tensor, source: torch.Tensor, pattern: nn.Module, mask: nn.Module) -> torch.Tensor:
    """x with the trigger made for `source` (source = x: its own trigger)."""
    return x + mask(source) * (pattern(source) - x)


def train_steps(loss_fn, params, epochs: int, batches, lr: float, desc: str) -> None:
    optimizer = Adam(params, lr=lr)
    for _ in bar(range(epochs), desc):
        for x, y in batches():
            loss = loss_fn(x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


class InputAware(Attack):
    name = "inputaware"
    schedule = "per_batch"

    @classmethod
    def check_params(cls, c, key, side, smallest):
        for name in ("width", "mask_epochs", "surrogate_width"):
            c.integer(f"{key}.{name}")
        c.integer(f"{key}.pattern_epochs", low=0)
        batch = c.get(f"{key}.batch_size")
        if not is_int(batch) or batch < 2:
            fail(f"{key}.batch_size", batch, "an integer >= 2 (the diversity loss pairs images)")
        c.number(f"{key}.mask_density", 0.0, 1.0)
        c.number(f"{key}.surrogate_poison_rate", 0.0, 0.5, high_open=False)
        for name in ("lambda_div", "lambda_norm", "cross_ratio"):
            c.number(f"{key}.{name}", 0.0, INF, low_open=False)
        c.number(f"{key}.lr", 0.0, INF)

    def __init__(self, tensors, params):
        super().__init__(tensors, params)
        self._nets = None  # (pattern, mask), rebuilt from the tensors on first use

    def nets(self) -> tuple[nn.Module, nn.Module]:
        if self._nets is None:
            first = self.tensors["pattern.enc.0.weight"]
            width, c = int(self.params["width"]), first.shape[1]
            built = []
            for prefix, net in (
                ("pattern.", EncoderDecoder(c, c, width)),
                ("mask.", EncoderDecoder(c, 1, width, True)),
            ):
                net.load_state_dict(
                    {k.removeprefix(prefix): v for k, v in self.tensors.items() if k.startswith(prefix)}
                )
                built.append(net.to(first.device).eval().requires_grad_(False))
            self._nets = tuple(built)
        return self._nets

    def to(self, device):
        super().to(device)
        self._nets = None
        return self

    @classmethod
    def create(cls, params, train_x, train_y, target, generator, **context):
        device = torch.device(context.get("device", "cpu"))
        c, width, batch_size = train_x.shape[1], int(params["width"]), int(params["batch_size"])
        lam_div, lam_norm, density = (
            float(params["lambda_div"]),
            float(params["lambda_norm"]),
            float(params["mask_density"]),
        )
        sample = train_x[:10000].float() / 255.0  # for the surrogate's input normalisation
        with torch.random.fork_rng(devices=[]):  # seeded weight init without touching global state
            torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
            pattern, mask = EncoderDecoder(c, c, width), EncoderDecoder(c, 1, width, sharp=True)
            surrogate = models.small_cnn(
                c,
                int(train_y.max()) + 1,
                sample.mean((0, 2, 3)).tolist(),
                sample.std((0, 2, 3)).tolist(),
                width=int(params["surrogate_width"]),
            )
        pattern, mask, surrogate = pattern.to(device), mask.to(device), surrogate.to(device)

        def batches():
            order = torch.randperm(len(train_x), generator=generator)
            for s in range(0, len(order) - 1, batch_size):  # pairs need at least two rows
                idx = order[s : s + batch_size]
                yield train_x[idx].to(device).float() / 255.0, train_y[idx].to(device)

        def mask_loss(x, _y):
            x2 = x.roll(1, 0)  # each image is paired with its neighbour in the shuffled batch
            m1, m2 = mask(x), mask(x2)
            norm = (m1.mean(dim=(1, 2, 3)) - density).abs().mean()
            return lam_norm * norm + lam_div * diversity_loss(x, x2, m1, m2)

        rate, cross = float(params["surrogate_poison_rate"]), float(params["cross_ratio"])

        def pattern_loss(x, y):
            n_bd = max(1, round(rate * len(x)))
            n_cross = round(rate * cross * len(x))
            x2 = x.roll(1, 0)
            bd = stamp(x[:n_bd], x[:n_bd], pattern, mask)
            crossed = stamp(x[n_bd : n_bd + n_cross], x2[n_bd : n_bd + n_cross], pattern, mask)
            inputs = torch.cat([bd, crossed, x[n_bd + n_cross :]])
            labels = torch.cat([torch.full((n_bd,), target, device=device), y[n_bd:]])
            return F.cross_entropy(surrogate(inputs), labels) + lam_div * diversity_loss(x, x2, pattern(x), pattern(x2))

        lr = float(params["lr"])
        train_steps(
            mask_loss, list(mask.parameters()), int(params["mask_epochs"]), batches, lr, "inputaware: mask generator"
        )
        mask.requires_grad_(False)  # frozen from here on, as in the original
        train_steps(
            pattern_loss,
            [*pattern.parameters(), *surrogate.parameters()],
            int(params["pattern_epochs"]),
            batches,
            lr,
            "inputaware: pattern generator",
        )

        tensors = {f"pattern.{k}": v.detach().cpu().clone() for k, v in pattern.state_dict().items()}
        tensors.update({f"mask.{k}": v.detach().cpu().clone() for k, v in mask.state_dict().items()})
        return cls(tensors, params)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        pattern, mask = self.nets()
        return stamp(x, x, pattern, mask)

    def poison_batch(self, x, y, poisoned, target, generator=None):
        if not bool(poisoned.any()) or len(x) < 2:
            return super().poison_batch(x, y, poisoned, target, generator)
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        pattern, mask = self.nets()
        out = x.clone()
        out[poisoned] = stamp(x[poisoned], x[poisoned], pattern, mask)
        # Cross-trigger rows (same rule as WaNet's noise rows): each gets the trigger made for a
        # different row of the batch; an offset of 1..N-1 never picks the row itself.
        rows = extra_rows(poisoned, float(self.params["cross_ratio"]), generator)
        if len(rows) > 0:
            donors = (rows + torch.randint(1, len(x), (len(rows),), generator=generator)) % len(x)
            rows, donors = rows.to(x.device), donors.to(x.device)
            out[rows] = stamp(x[rows], x[donors], pattern, mask)
        return out, torch.where(poisoned, torch.full_like(y, target), y)

    def cross_count(self, n_bd, share, n, generator):
        # The official code sizes the cross rows from the batch (int(p_cross * bs), p_cross = p_attack
        # = 0.1 by default), not from the triggered rows: here share x cross_ratio x the batch.
        return stochastic_count(share * float(self.params["cross_ratio"]) * n, generator) if n > 1 else 0

    def cross_rows(self, x, start, count, generator):
        # The official code takes each cross row's trigger from the same position of a second,
        # independently shuffled loader, i.e. from a random training image; here from a random other
        # row of the (shuffled) batch: an offset of 1..N-1 never picks the row itself.
        rows = torch.arange(start, start + count)
        donors = (rows + torch.randint(1, len(x), (count,), generator=generator)) % len(x)
        rows, donors = rows.to(x.device), donors.to(x.device)
        pattern, mask = self.nets()
        return stamp(x[rows], x[donors], pattern, mask)
