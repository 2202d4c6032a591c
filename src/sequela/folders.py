"""Labelled images from outside the pipeline: an image folder (torchvision's ImageFolder layout,
root/<class>/<image>, classes in sorted order) or a .npz with arrays `x` (uint8 images) and `y`
(labels), read into a Split of uint8 (N, C, H, W) tensors, as the pipeline's own splits are.

The rows of a folder are ordered by file name, then class (not class by class): a defense's batches
are drawn by its seed from the rows in this order, so `sequela export`, which names each image by its
row in the pipeline's split, gives back the pipeline's order and, with the same seed, its model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sequela.data import Split
from sequela.errors import StageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def read_images(path: str | Path, channels: int) -> tuple[Split, list[str]]:
    """The images under `path` and their class names (an image folder's subfolders; a .npz's
    labels 0..max as strings). Images are converted to `channels` (1: grey, 3: RGB)."""
    path = Path(path)
    if not path.exists():
        raise StageError(f"{path}: no such folder or file; expected an image folder (<class>/<image>) or a .npz")
    if path.is_file():
        if path.suffix != ".npz":
            raise StageError(f"{path}: not a .npz; expected an image folder (<class>/<image>) or a .npz with x and y")
        return read_npz(path, channels)
    return read_folder(path, channels)


def read_folder(root: Path, channels: int) -> tuple[Split, list[str]]:
    from PIL import Image

    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise StageError(f"{root}: no class subfolders; expected the ImageFolder layout <class>/<image>")
    images, labels, shape = [], [], None
    mode = "L" if channels == 1 else "RGB"
    files = sorted((file.name, label, file) for label, name in enumerate(classes)
                   for file in (root / name).iterdir() if file.suffix.lower() in IMAGE_SUFFIXES)
    for _, label, file in files:
        with Image.open(file) as image:
            array = np.asarray(image.convert(mode), dtype=np.uint8)
        if shape is not None and array.shape != shape:
            raise StageError(f"{file}: {array.shape[:2]} pixels where {root}'s first image has {shape[:2]}; "
                             "every image of a folder needs one size")
        shape = array.shape
        images.append(array)
        labels.append(label)
    if not images:
        raise StageError(f"{root}: its class folders hold no images ({', '.join(IMAGE_SUFFIXES)})")
    x = torch.from_numpy(np.stack(images))
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return Split(x.contiguous(), torch.tensor(labels, dtype=torch.long)), classes


def read_npz(path: Path, channels: int) -> tuple[Split, list[str]]:
    with np.load(path, allow_pickle=False) as archive:  # never unpickle
        if "x" not in archive or "y" not in archive:
            raise StageError(f"{path}: holds {', '.join(archive.files)}; expected arrays x (uint8 images) and y (labels)")
        x, y = archive["x"], archive["y"]
    if x.dtype != np.uint8 or x.ndim not in (3, 4) or len(x) != len(y):
        raise StageError(f"{path}: x is {x.dtype} {x.shape} and y has {len(y)} rows; expected uint8 images "
                         "(N, H, W), (N, H, W, C) or (N, C, H, W), one label per image")
    x = torch.from_numpy(x)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    elif x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.shape[1] != channels:
        raise StageError(f"{path}: images with {x.shape[1]} channels; the model takes {channels}")
    labels = torch.from_numpy(y.astype(np.int64))
    return Split(x.contiguous(), labels), [str(k) for k in range(int(labels.max()) + 1)]


def fit_size(split: Split, shape: list[int], resize: bool, where: str) -> tuple[Split, bool]:
    """`split` at the model's input shape (C, H, W): as it is, or resized where `resize` allows it
    (bilinear, antialiased); returns whether it was resized."""
    if list(split.x.shape[1:]) == list(shape):
        return split, False
    if not resize:
        raise StageError(f"{where}: images are {tuple(split.x.shape[2:])} pixels; the model takes {tuple(shape[1:])} "
                         "(to resize them, which the report then states: --resize, or external.resize in params.yaml)")
    x = torch.nn.functional.interpolate(split.x.float(), size=tuple(shape[1:]), mode="bilinear",
                                        antialias=True, align_corners=False)
    return Split(x.round().clamp(0, 255).to(torch.uint8), split.y), True
