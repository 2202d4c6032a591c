"""Labelled images from outside the pipeline: an image folder (torchvision's ImageFolder layout,
root/<class>/<image>) or a .npz with arrays `x` (uint8 images) and `y` (labels), read into a Split of
uint8 (N, C, H, W) tensors, as the pipeline's own splits are; and the same two forms written back.

Class folders map onto class indices by name where every name is an integer ("07" is class 7), so a
folder may leave classes out (a triggered set without the target class, a small draw without the
last class). Folders named otherwise map in sorted order, and then there must be one per class of
the model. Labels outside the model's classes are refused.

The rows of a folder are ordered by file name, then class (not class by class): a defense's batches
are drawn by its seed from the rows in this order, so `sequela export`, which names each image by its
row in the pipeline's split, gives back the pipeline's order and, with the same seed, its model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sequela.datasets.splits import Split
from sequela.pipeline.errors import StageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def read_images(path: str | Path, channels: int, num_classes: int | None = None) -> tuple[Split, list[str]]:
    """The images under `path` and the names of the classes 0..K-1 (K: `num_classes` where given,
    else one past the largest label). Images are converted to `channels` (1: grey, 3: RGB). With
    `num_classes`, a label outside 0..num_classes-1 is refused."""
    path = Path(path)
    if not path.exists():
        raise StageError(f"{path}: no such folder or file; expected an image folder (<class>/<image>) or a .npz")
    if path.is_file():
        if path.suffix != ".npz":
            raise StageError(f"{path}: not a .npz; expected an image folder (<class>/<image>) or a .npz with x and y")
        split = read_npz(path, channels)
    else:
        split = read_folder(path, channels, num_classes)
    count = num_classes if num_classes is not None else int(split.y.max()) + 1
    low, high = int(split.y.min()), int(split.y.max())
    if low < 0 or high >= count:
        raise StageError(
            f"{path}: label {low if low < 0 else high} is out of range; allowed: 0..{count - 1} "
            f"(the model has {count} classes)"
        )
    return split, [str(k) for k in range(count)]


def class_indices(root: Path, names: list[str], num_classes: int | None) -> dict[str, int]:
    """Each class folder's index: its name where every name is an integer, else its sorted place
    (then the folders must be as many as the model's classes, or the mapping would be a guess)."""
    if all(name.isdigit() for name in names):
        indices = {name: int(name) for name in names}
        if len(set(indices.values())) != len(names):
            raise StageError(f"{root}: class folders {', '.join(names)} name one class twice (07 and 7)")
        return indices
    if num_classes is not None and len(names) != num_classes:
        raise StageError(
            f"{root}: {len(names)} class folders; the model has {num_classes} classes. Folders "
            "named other than by integers map in sorted order, one per class; name them by class "
            "index (00, 01, ...) to leave classes out"
        )
    return {name: k for k, name in enumerate(sorted(names))}


def read_folder(root: Path, channels: int, num_classes: int | None = None) -> Split:
    from PIL import Image

    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not names:
        raise StageError(f"{root}: no class subfolders; expected the ImageFolder layout <class>/<image>")
    indices = class_indices(root, names, num_classes)
    images, labels, shape = [], [], None
    mode = "L" if channels == 1 else "RGB"
    files = sorted(
        (file.name, indices[name], file)
        for name in names
        for file in (root / name).iterdir()
        if file.suffix.lower() in IMAGE_SUFFIXES
    )
    for _, label, file in files:
        with Image.open(file) as image:
            array = np.asarray(image.convert(mode), dtype=np.uint8)
        if shape is not None and array.shape != shape:
            raise StageError(
                f"{file}: {array.shape[:2]} pixels where {root}'s first image has {shape[:2]}; "
                "every image of a folder needs one size"
            )
        shape = array.shape
        images.append(array)
        labels.append(label)
    if not images:
        raise StageError(f"{root}: its class folders hold no images ({', '.join(IMAGE_SUFFIXES)})")
    x = torch.from_numpy(np.stack(images))
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return Split(x.contiguous(), torch.tensor(labels, dtype=torch.long))


def read_npz(path: Path, channels: int) -> Split:
    with np.load(path, allow_pickle=False) as archive:  # never unpickle
        if "x" not in archive or "y" not in archive:
            raise StageError(
                f"{path}: holds {', '.join(archive.files)}; expected arrays x (uint8 images) and y (labels)"
            )
        x, y = archive["x"], archive["y"]
    if x.dtype != np.uint8 or x.ndim not in (3, 4) or len(x) != len(y) or not len(y):
        raise StageError(
            f"{path}: x is {x.dtype} {x.shape} and y has {len(y)} rows; expected uint8 images "
            "(N, H, W), (N, H, W, C) or (N, C, H, W), one label per image, N > 0"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise StageError(f"{path}: y is {y.dtype}; expected integer class labels")
    x = torch.from_numpy(x)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    elif x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.shape[1] != channels:
        raise StageError(f"{path}: images with {x.shape[1]} channels; the model takes {channels}")
    return Split(x.contiguous(), torch.from_numpy(y.astype(np.int64)))


def stratified_rows(y: torch.Tensor, fraction: float, seed: int, leave: int = 0) -> torch.Tensor:
    """Sorted indices of a seeded, stratified `fraction` of the rows: of each class's n rows,
    round(fraction x n) drawn, at least one, and never more than n - `leave` (a class with no more
    than `leave` rows gives none). One generator, seeded with `seed`, draws every class in turn."""
    g = torch.Generator().manual_seed(seed)
    taken = []
    for label in torch.unique(y.cpu()).tolist():
        rows = (y.cpu() == label).nonzero().flatten()
        n = min(max(1, round(fraction * len(rows))), len(rows) - leave)
        if n > 0:
            taken.append(rows[torch.randperm(len(rows), generator=g)[:n]])
    return torch.cat(taken).sort().values if taken else torch.empty(0, dtype=torch.long)


def write_folder(split: Split, root: Path) -> None:
    """uint8 images (N, C, H, W) as root/<label:02d>/<row:06d>.png: names the reader maps back to
    the same labels and rows."""
    from PIL import Image

    for row, (image, label) in enumerate(zip(split.x.cpu(), split.y.cpu().tolist())):
        folder = root / f"{label:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        array = image.permute(1, 2, 0).numpy()
        Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(folder / f"{row:06d}.png")


def write_npz(split: Split, path: Path) -> None:
    """x as uint8 (N, H, W, C) and y as int64, the layout the reader takes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:  # a handle: np.savez would add .npz to a staging name
        np.savez(handle, x=split.x.cpu().permute(0, 2, 3, 1).numpy(), y=split.y.cpu().numpy().astype(np.int64))


def fit_size(split: Split, shape: list[int], resize: bool, where: str) -> tuple[Split, bool]:
    """`split` at the model's input shape (C, H, W): as it is, or resized where `resize` allows it
    (bilinear, antialiased); returns whether it was resized."""
    if list(split.x.shape[1:]) == list(shape):
        return split, False
    if not resize:
        raise StageError(
            f"{where}: images are {tuple(split.x.shape[2:])} pixels; the model takes {tuple(shape[1:])} "
            "(to resize them, which the report then states: --resize, or external.resize in params.yaml)"
        )
    x = torch.nn.functional.interpolate(
        split.x.float(), size=tuple(shape[1:]), mode="bilinear", antialias=True, align_corners=False
    )
    return Split(x.round().clamp(0, 255).to(torch.uint8), split.y), True
