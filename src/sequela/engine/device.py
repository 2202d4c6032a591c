"""Where a stage computes and from which seed: the device, the seeding of every generator, and the
precision of forward passes.

On CUDA the model runs channels_last under bf16 autocast; on a CPU it runs in float32, or under bf16
autocast where the recipe asks for it (`cpu_bf16`), and, for a given seed and thread count, gives
identical results.
"""

from __future__ import annotations

import random
from contextlib import nullcontext

import numpy as np
import torch


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
