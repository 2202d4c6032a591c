"""Step time of BTI-DBF(U)'s backdoor inversion (also PAM's), float32 against bf16 autocast.

On GTSRB's CPU recipe the inversion is most of a BTI-DBF(U) or PAM run: 50 + 2 x (20 + 30) epochs
over the defender's clean images, each step a U-Net forward and backward through the frozen
classifier. This times one such step of `Inversion.invert` (the costliest kind) at the shapes that
recipe gives: compact CNN width 32, U-Net width 16 and depth 2, batch 64, 32x32 colour images.

    uv run python benchmarks/inversion_step.py [--threads 1] [--batch 64]
"""

import argparse
import time

import torch
import torch.nn.functional as F

from sequela import engine
from sequela.defenses.btidbf import UNet, feature_map
from sequela.engine import Adam
from sequela.models import build


def step_ms(bf16: bool, batch: int, steps: int = 20) -> float:
    engine.use_cpu_bf16(bf16)
    torch.manual_seed(0)
    model = build("compact_cnn", 3, 43, [0.5] * 3, [0.25] * 3, width=32).eval()
    model.channels_last = True
    for q in model.parameters():
        q.requires_grad_(False)
    generator = UNet(3, 16, 2)
    opt = Adam(generator.parameters(), lr=1e-3)
    x = torch.rand(batch, 3, 32, 32)
    device = torch.device("cpu")
    for i in range(steps + 3):
        if i == 3:  # warm-up steps left out
            start = time.perf_counter()
        with engine.autocast(device):
            g = generator(x)
            with torch.no_grad():
                f_x = feature_map(model, x).float()
            loss = -F.mse_loss(feature_map(model, g).float(), f_x) + F.mse_loss(g.float(), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for bf16 in (False, True):
        ms = step_ms(bf16, args.batch)
        print(f"inversion step, batch {args.batch}, {args.threads} threads, {'bf16' if bf16 else 'float32'}: "
              f"{ms:.0f} ms")


if __name__ == "__main__":
    main()
