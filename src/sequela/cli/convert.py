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

    sequela convert attack_result.pt --backdoorbench --triggered-out triggered.npz --out model.safetensors

`--backdoorbench` reads a BackdoorBench attack result (a dict holding `model_name`, `num_classes`,
`img_size`, `clean_data`, the state dict under `model` and the poisoned test set under `bd_test`) whose
images are tensors, so that `weights_only=True` loads it (docs/own-model.md re-saves BackdoorBench's
own file so). The architecture, class count and input shape come from the file, the width from the
state dict, the normalisation from BackdoorBench's for `clean_data` unless --mean / --std are given;
--triggered-out receives the poisoned test images with their original labels as a .npz. Existing
output files are refused unless --force is given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from sequela import models
from sequela.pipeline.errors import StageError

WRAPPERS = ("state_dict", "model")
# BackdoorBench's model names for the architectures the registry shares with it.
BACKDOORBENCH_ARCHS = {"preactresnet18": "preact_resnet18"}
# BackdoorBench's input normalisation per dataset (its get_dataset_normalization), [0, 1] pixel units.
BACKDOORBENCH_NORMALISATION = {
    "cifar10": ([0.4914, 0.4822, 0.4465], [0.247, 0.243, 0.261]),
    "cifar100": ([0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]),
    "mnist": ([0.5], [0.5]),
    "tiny": ([0.4802, 0.4481, 0.3975], [0.2302, 0.2265, 0.2262]),
    "gtsrb": ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]),
    "celeba": ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]),
}
BACKDOORBENCH_KEYS = ("model_name", "num_classes", "img_size", "model", "bd_test")


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def load_plain(path: Path, remedy: str):
    """`torch.load(path, weights_only=True)`: tensors and plain containers only, never code."""
    if not path.is_file():
        raise StageError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - UnpicklingError and its kin: the file needs code to load
        raise StageError(
            f"{path}: torch.load(weights_only=True) refused it ({str(err).splitlines()[0][:120]}); "
            f"it holds more than tensors. {remedy}"
        ) from None


def read_checkpoint(path: Path, key: str | None) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors" and path.is_file():
        from sequela.pipeline.io import load_tensors

        return load_tensors(path)
    obj = load_plain(path, "Save its state dict alone where it was made: torch.save(model.state_dict(), 'weights.pt')")
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
            raise StageError(
                f"checkpoint tensor {name!r} has no counterpart in {arch} "
                f"(its names look like {', '.join(list(expected)[3:6])})"
            )
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise StageError(
                f"checkpoint tensor {name!r} has shape {tuple(tensor.shape)}; {arch} with these "
                f"arguments has {tuple(expected[name].shape)}"
            )
    given_by_arguments = ("normalize.", "channel_mask")
    missing = [k for k in expected if k not in state and not k.startswith(given_by_arguments)]
    if missing:
        raise StageError(f"the checkpoint lacks {missing[0]!r} of {arch} ({len(missing)} tensors in all)")


def read_backdoorbench(path: Path) -> dict:
    """A BackdoorBench attack result, re-saved with tensor images: the model's description, its
    state dict, and the poisoned test set as (uint8 N x H x W x C images, original labels, backdoor
    labels), rows in BackdoorBench's order."""
    obj = load_plain(
        path,
        "BackdoorBench keeps PIL images and numpy arrays in it: re-save it with tensor "
        "images in BackdoorBench's environment (docs/own-model.md)",
    )
    missing = [k for k in BACKDOORBENCH_KEYS if not isinstance(obj, dict) or k not in obj]
    if missing:
        raise StageError(
            f"{path}: no {', '.join(missing)}; expected BackdoorBench's attack result "
            f"(a dict with {', '.join(BACKDOORBENCH_KEYS)})"
        )
    if obj["model_name"] not in BACKDOORBENCH_ARCHS:
        raise StageError(
            f"{path}: model_name {obj['model_name']!r} is not allowed; allowed: {', '.join(BACKDOORBENCH_ARCHS)}"
        )
    size = [int(v) for v in obj["img_size"]]
    if len(size) != 3:
        raise StageError(f"{path}: img_size {size}; expected BackdoorBench's [height, width, channels]")
    x, y, bd = backdoorbench_rows(path, obj["bd_test"])
    return {
        "arch": BACKDOORBENCH_ARCHS[obj["model_name"]],
        "num_classes": int(obj["num_classes"]),
        "input_shape": [size[2], size[0], size[1]],
        "clean_data": obj.get("clean_data"),
        "state": obj["model"],
        "x": x,
        "y": y,
        "bd": bd,
    }


def backdoorbench_rows(path: Path, state) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """bd_test as BackdoorBench's dataset keeps it: `bd_data_container.data_dict` maps a row's
    original index to (image, backdoor label, original label); `original_index_array` orders them."""
    try:
        data = state["bd_data_container"]["data_dict"]
        order = [int(i) for i in state["original_index_array"]]
    except (KeyError, TypeError):
        raise StageError(
            f"{path}: bd_test holds no bd_data_container.data_dict and original_index_array "
            "(BackdoorBench's prepro_cls_DatasetBD_v2 state)"
        ) from None
    order = [i for i in order if i in data]
    if not order:
        raise StageError(f"{path}: bd_test holds no poisoned images")
    images, labels, targets = [], [], []
    for i in order:
        image, bd_label, label = data[i]
        if not isinstance(image, torch.Tensor) or image.dtype != torch.uint8 or image.ndim not in (2, 3):
            raise StageError(
                f"{path}: bd_test image {i} is not a uint8 tensor (H, W) or (H, W, C); re-save the "
                "images as tensors (docs/own-model.md)"
            )
        images.append(image if image.ndim == 3 else image[..., None])
        labels.append(int(label))
        targets.append(int(bd_label))
    if len({tuple(im.shape) for im in images}) != 1:
        raise StageError(f"{path}: bd_test images of several sizes")
    return torch.stack(images), torch.tensor(labels), torch.tensor(targets)


def write_triggered(found: dict, path: Path) -> None:
    from sequela.datasets.splits import Split
    from sequela.folders import write_npz

    write_npz(Split(found["x"].permute(0, 3, 1, 2), found["y"]), path)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="sequela convert", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--arch", help=f"one of {', '.join(models.ARCHITECTURES)}")
    p.add_argument("--num-classes", type=int)
    p.add_argument("--input-shape", help="C,H,W, e.g. 3,32,32")
    p.add_argument("--width", type=int, default=None, help="the architecture's width (its default if unset)")
    p.add_argument("--mean", default=None, help="per-channel input mean, comma-separated (default 0)")
    p.add_argument("--std", default=None, help="per-channel input std, comma-separated (default 1)")
    p.add_argument("--strip-prefix", default=None, help="key prefix to drop (default: module. where every key has it)")
    p.add_argument("--key", default=None, help="the checkpoint's key that holds the state dict")
    p.add_argument(
        "--backdoorbench",
        action="store_true",
        help="CHECKPOINT is a BackdoorBench attack result: the model's description comes from it",
    )
    p.add_argument("--triggered-out", type=Path, help="with --backdoorbench: its poisoned test set, as this .npz")
    p.add_argument("--out", type=Path, required=True, help="the .safetensors file to write")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    return p.parse_args(argv)


def described(args: argparse.Namespace, found: dict | None) -> tuple[str, int, list[int]]:
    """Architecture, class count and input shape: from the options, or from a BackdoorBench file
    (where options given as well must agree with it)."""
    given = {
        "--arch": args.arch,
        "--num-classes": args.num_classes,
        "--input-shape": None if args.input_shape is None else args.input_shape.replace(" ", ""),
    }
    if found is None:
        absent = [k for k, v in given.items() if v is None]
        if absent:
            raise StageError(f"{', '.join(absent)} required (or --backdoorbench, which reads them from the file)")
        try:
            shape = [int(v) for v in args.input_shape.split(",")]
        except ValueError:
            shape = []
        return args.arch, args.num_classes, shape
    shape = found["input_shape"]
    theirs = {
        "--arch": found["arch"],
        "--num-classes": found["num_classes"],
        "--input-shape": ",".join(map(str, shape)),
    }
    for option, value in given.items():
        if value is not None and str(value) != str(theirs[option]):
            raise StageError(f"{option} {value} is not allowed: the BackdoorBench file says {theirs[option]}")
    return found["arch"], found["num_classes"], shape


def normalisation(args: argparse.Namespace, channels: int, found: dict | None) -> tuple[list[float], list[float]]:
    if found is not None and not (args.mean and args.std):
        known = BACKDOORBENCH_NORMALISATION.get(found["clean_data"])
        if known is None:
            raise StageError(
                f"--mean and --std are required: BackdoorBench's normalisation of clean_data "
                f"{found['clean_data']!r} is not known here (known: "
                f"{', '.join(BACKDOORBENCH_NORMALISATION)})"
            )
        return known
    mean = floats(args.mean) if args.mean else [0.0] * channels
    std = floats(args.std) if args.std else [1.0] * channels
    return mean, std


def main(argv: list[str]) -> int:
    args = parse(argv)
    staged: list[Path] = []
    try:
        from sequela.cli.defend import check_out

        check_out(args.out, args.force)
        if args.triggered_out is not None:
            if not args.backdoorbench:
                raise StageError("--triggered-out needs --backdoorbench: only its file holds a poisoned test set")
            if args.triggered_out.suffix != ".npz":
                raise StageError(f"--triggered-out {args.triggered_out}: the triggered images are written as .npz")
            check_out(args.triggered_out, args.force, "--triggered-out")
        if args.out.suffix != ".safetensors":
            raise StageError(f"--out {args.out}: the model file is written as .safetensors")
        found = read_backdoorbench(args.checkpoint) if args.backdoorbench else None
        arch, num_classes, shape = described(args, found)
        if arch not in models.ARCHITECTURES:
            raise StageError(f"--arch {arch!r} is not allowed; allowed: {', '.join(models.ARCHITECTURES)}")
        if len(shape) != 3 or min(shape) < 1:
            raise StageError(
                f"--input-shape {args.input_shape!r} is not allowed; allowed: C,H,W, three positive integers"
            )
        mean, std = normalisation(args, shape[0], found)
        if len(mean) != shape[0] or len(std) != shape[0] or min(std) <= 0:
            raise StageError(f"--mean / --std need {shape[0]} values each (std > 0), one per input channel")
        if found is None:
            state = rename(read_checkpoint(args.checkpoint, args.key), arch, args.strip_prefix)
        else:
            if not isinstance(found["state"], dict):
                raise StageError(f"{args.checkpoint}: its `model` is not a state dict")
            state = rename(dict(found["state"]), arch, args.strip_prefix)
        width = args.width
        if width is None and found is not None and "stem.weight" in state:
            width = int(state["stem.weight"].shape[0])  # BackdoorBench's file does not state it
        spec = {
            "arch": arch,
            "in_channels": shape[0],
            "num_classes": num_classes,
            "mean": mean,
            "std": std,
            "width": width,
            "input_shape": shape,
        }
        model = models.build_from_spec(spec)
        expected = model.state_dict()
        check_against(state, expected, arch)
        model.load_state_dict({**expected, **state})
        # staged beside their targets, renamed once both are whole
        staged = [args.out.with_name(args.out.name + ".partial")]
        models.save_file(model, spec, staged[0])
        if args.triggered_out is not None:
            staged.append(args.triggered_out.with_name(args.triggered_out.name + ".partial"))
            write_triggered(found, staged[1])
        for part, final in zip(staged, [args.out, args.triggered_out]):
            part.replace(final)
    except (StageError, ValueError) as err:
        for part in staged:
            part.unlink(missing_ok=True)
        print(f"error: sequela convert: {err}", file=sys.stderr)
        return 2
    print(f"{args.out}: {arch}, {num_classes} classes, input {tuple(shape)}, {len(state)} tensors checked")
    if found is not None and args.triggered_out is not None:
        targets = found["bd"].unique().tolist()
        aim = f"target {targets[0]}" if len(targets) == 1 else f"backdoor labels {targets} (not all-to-one)"
        print(f"{args.triggered_out}: {len(found['y'])} poisoned test images with their original labels; {aim}")
    return 0
