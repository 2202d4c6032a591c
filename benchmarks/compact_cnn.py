"""Training-step time of the compact CNN (the CPU recipe's 32x32 model) on this machine.

One SGD step on a random batch of 32x32 colour images, 43 classes (GTSRB), NCHW against NHWC
(channels_last) inputs, in float32 and under bf16 autocast, with the threads torch is given. The
model's `channels_last` flag chooses the layout the pipeline uses, and `cpu_bf16` in a recipe turns
on the autocast; this shows what each buys on this CPU (bf16 pays where the CPU has bf16 matrix
instructions: `lscpu` shows amx_bf16 or avx512_bf16).

    uv run python benchmarks/compact_cnn.py [--threads 2] [--batch 64]
"""

import argparse
import time

import torch
import torch.nn.functional as F

from sequela.engine.optimizers import sgd
from sequela.models import build

GTSRB_TRAIN = 19_604  # training images after the shadow split, for the per-epoch figure


def step_ms(channels_last: bool, bf16: bool, batch: int, width: int, steps: int = 20) -> float:
    torch.manual_seed(0)
    model = build("compact_cnn", 3, 43, [0.5] * 3, [0.25] * 3, width=width)
    model.channels_last = channels_last
    optimizer = sgd(model, lr=0.05)
    x, y = torch.rand(batch, 3, 32, 32), torch.randint(0, 43, (batch,))
    for i in range(steps + 3):
        if i == 3:  # warm-up steps left out
            start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for channels_last, bf16 in ((False, False), (True, False), (True, True)):
        ms = step_ms(channels_last, bf16, args.batch, args.width)
        epoch = ms / 1000 * GTSRB_TRAIN / args.batch
        print(
            f"compact_cnn width {args.width}, batch {args.batch}, {args.threads} threads, "
            f"{'NHWC' if channels_last else 'NCHW'} {'bf16' if bf16 else 'float32'}: "
            f"{ms:.0f} ms/step, {epoch:.1f} s per GTSRB epoch"
        )


if __name__ == "__main__":
    main()
