"""Step time of BTI-DBF(U)'s backdoor inversion (also PAM's), float32 against bf16 autocast.

On GTSRB's CPU recipe the inversion is most of a BTI-DBF(U) or PAM run: 50 + 2 x (20 + 30) epochs
over the defender's clean images, each step a U-Net forward and backward through the frozen
classifier. This runs the defense's own `Inversion.invert` (the costliest kind of step) at the
shapes that recipe gives: compact CNN width 32, the U-Net of params.yaml's `defense.btidbf`, the
defender's batch of 64, 32x32 colour images, and reports its time per step (the target detection
pass at the end of each call included).

    uv run python benchmarks/inversion_step.py [--threads 1] [--batch 64]
"""

import argparse
import time
from pathlib import Path

import torch
import yaml

from sequela.datasets.splits import Split
from sequela.defenses.base import DefenseContext
from sequela.defenses.btidbf import Inversion
from sequela.engine import device
from sequela.models import build

ROOT = Path(__file__).resolve().parents[1]
IMAGES = 640  # the defender's clean images here: 10 steps per epoch


def step_ms(bf16: bool, batch: int, epochs: int = 2) -> float:
    device.use_cpu_bf16(bf16)
    torch.manual_seed(0)
    settings = yaml.safe_load((ROOT / "params.yaml").read_text())["defense"]
    clean = Split(torch.randint(0, 256, (IMAGES, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 43, (IMAGES,)))
    ctx = DefenseContext.for_defender(
        settings,
        "btidbf",
        seed=0,
        overrides={"invert_epochs": epochs},
        batch_size=batch,
        model=build("compact_cnn", 3, 43, [0.5] * 3, [0.25] * 3, width=32),
        clean=clean,
        train=clean,
        poisoned=torch.empty(0, dtype=torch.long),
        attack=None,
        target=0,
        recipe=None,
        device=torch.device("cpu"),
        recorder=None,
    )
    inversion = Inversion(ctx, ctx.params)
    inversion.mask = torch.full(mask_shape(ctx), 0.5)
    inversion.invert(0)  # warm-up
    start = time.perf_counter()
    inversion.invert(0)
    return (time.perf_counter() - start) / (epochs * len(inversion.stream)) * 1000


def mask_shape(ctx: DefenseContext) -> tuple[int, ...]:
    """The shape of the last stage's feature map, which the benign-feature mask covers."""
    with torch.no_grad():
        return tuple(ctx.model.stage_outputs(torch.zeros(1, 3, 32, 32))[-1].shape[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for bf16 in (False, True):
        ms = step_ms(bf16, args.batch)
        print(
            f"inversion step, batch {args.batch}, {args.threads} threads, {'bf16' if bf16 else 'float32'}: {ms:.0f} ms"
        )


if __name__ == "__main__":
    main()
