"""sequela convert: a PyTorch state-dict checkpoint -> a self-describing safetensors model file.

    sequela convert CKPT --arch preact_resnet18 --num-classes 10 --input-shape 3,32,32 \\
        --mean 0.4914,0.4822,0.4465 --std 0.247,0.243,0.261 --out model.safetensors

The checkpoint is read with `torch.load(..., weights_only=True)` only: a file that needs more than
tensors and plain containers to load is refused, never unpickled. A checkpoint that wraps its state
dict (under `state_dict` or `model`, or the key `--key` names) is unwrapped; a prefix such as
`module.` (DataParallel) is stripped; BackdoorBench's PreActResNet18 names (conv1, layer1-4, linear)
are mapped onto the registry's. Every tensor's name and shape is then checked against the
architecture built from the arguments, and the first mismatch is named. The normalisation is not in
a state dict: `--mean` / `--std` give the per-channel statistics the model's inputs were normalised
with (BackdoorBench normalises CIFAR-10 by its training set's; 0 and 1 leave inputs as they are).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from sequela import models
from sequela.errors import StageError

WRAPPERS = ("state_dict", "model")


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def read_checkpoint(path: Path, key: str | None) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise StageError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        from sequela.io import load_tensors

        return load_tensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError and its kin: the file needs code to load
        raise StageError(f"{path}: torch.load(weights_only=True) refused it ({str(err).splitlines()[0][:120]}); "
                         "it holds more than tensors. Save its state dict alone where it was made: "
                         "torch.save(model.state_dict(), 'weights.pt')") from None
    if isinstance(obj, dict) and (key or not all(isinstance(v, torch.Tensor) for v in obj.values())):
        wrapper = key or next((k for k in WRAPPERS if isinstance(obj.get(k), dict)), None)
        if wrapper is None or not isinstance(obj.get(wrapper), dict):
            raise StageError(f"{path}: a dict of {', '.join(map(str, list(obj)[:8]))}; name the state dict with --key")
        obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise StageError(f"{path}: not a state dict (a mapping of names to tensors)")
    return dict(obj)


def rename(state: dict[str, torch.Tensor], arch: str, strip: str | None) -> dict[str, torch.Tensor]:
    prefix = strip if strip is not None else ("module." if all(k.startswith("module.") for k in state) else "")
    state = {k.removeprefix(prefix): v for k, v in state.items()}
    if arch == "preact_resnet18" and any(k.startswith(tuple(models.PREACT_NAMES)) for k in state):
        def ours(k: str) -> str:
            for theirs, mine in models.PREACT_NAMES.items():
                if k.startswith(theirs):
                    return mine + k.removeprefix(theirs)
            return k
        state = {ours(k): v for k, v in state.items()}
    return state


def check_against(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], arch: str) -> None:
    """Every checkpoint tensor has a counterpart of the same shape, and every learned tensor of the
    architecture is in the checkpoint (the normalisation and the pruning mask are not learned)."""
    for name, tensor in state.items():
        if name not in expected:
            raise StageError(f"checkpoint tensor {name!r} has no counterpart in {arch} "
                             f"(its names look like {', '.join(list(expected)[3:6])})")
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise StageError(f"checkpoint tensor {name!r} has shape {tuple(tensor.shape)}; {arch} with these "
                             f"arguments has {tuple(expected[name].shape)}")
    given_by_arguments = ("normalize.", "channel_mask")
    missing = [k for k in expected if k not in state and not k.startswith(given_by_arguments)]
    if missing:
        raise StageError(f"the checkpoint lacks {missing[0]!r} of {arch} ({len(missing)} tensors in all)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sequela convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--arch", required=True, help=f"one of {', '.join(models.ARCHITECTURES)}")
    parser.add_argument("--num-classes", type=int, required=True)
    parser.add_argument("--input-shape", required=True, help="C,H,W, e.g. 3,32,32")
    parser.add_argument("--width", type=int, default=None, help="the architecture's width (its default if unset)")
    parser.add_argument("--mean", default=None, help="per-channel input mean, comma-separated (default 0)")
    parser.add_argument("--std", default=None, help="per-channel input std, comma-separated (default 1)")
    parser.add_argument("--strip-prefix", default=None, help="key prefix to drop (default: module. where every key has it)")
    parser.add_argument("--key", default=None, help="the checkpoint's key that holds the state dict")
    parser.add_argument("--out", type=Path, required=True, help="the .safetensors file to write")
    args = parser.parse_args(argv)
    try:
        if args.arch not in models.ARCHITECTURES:
            raise StageError(f"--arch {args.arch!r} is not allowed; allowed: {', '.join(models.ARCHITECTURES)}")
        shape = [int(v) for v in args.input_shape.split(",")]
        if len(shape) != 3 or min(shape) < 1:
            raise StageError(f"--input-shape {args.input_shape!r} is not allowed; allowed: C,H,W, three positive integers")
        mean = floats(args.mean) if args.mean else [0.0] * shape[0]
        std = floats(args.std) if args.std else [1.0] * shape[0]
        if len(mean) != shape[0] or len(std) != shape[0] or min(std) <= 0:
            raise StageError(f"--mean / --std need {shape[0]} values each (std > 0), one per input channel")
        if args.out.suffix != ".safetensors":
            raise StageError(f"--out {args.out}: the model file is written as .safetensors")
        spec = {"arch": args.arch, "in_channels": shape[0], "num_classes": args.num_classes, "mean": mean,
                "std": std, "width": args.width, "input_shape": shape}
        model = models.build_from_spec(spec)
        state = rename(read_checkpoint(args.checkpoint, args.key), args.arch, args.strip_prefix)
        expected = model.state_dict()
        check_against(state, expected, args.arch)
        model.load_state_dict({**expected, **state})
        models.save_file(model, spec, args.out)
    except (StageError, ValueError) as err:
        print(f"error: sequela convert: {err}", file=sys.stderr)
        return 2
    print(f"{args.out}: {args.arch}, {args.num_classes} classes, input {tuple(shape)}, {len(state)} tensors checked")
    return 0
