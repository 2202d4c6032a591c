"""The datasets that come through torchvision's dataset classes, as uint8 tensors (see `loaders.load`).

Each dataset lives under `root` exactly as torchvision lays it out (`root/MNIST/raw/...`,
`root/cifar-10-batches-py/...`, `root/train_32x32.mat`, `root/gtsrb/...`, `root/stl10_binary/...`),
so a folder that torchvision filled elsewhere can be copied in as it is. Where a network exists,
torchvision downloads what is missing; offline, `MissingDatasetError` names the files looked for,
where, and how to supply them.

Tensors are built from the classes' in-memory arrays in one go. GTSRB has none (it reads one PPM file
per sample), so it is read file by file, each image resized to 32x32; its training split also keeps
each image's track (`gtsrb_tracks`) as the split's group id. STL-10 keeps only its labelled splits
(5,000 train, 8,000 test), resized from 96x96 to 32x32.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision.datasets as tvd
from PIL import Image

from sequela.datasets.splits import Dataset, Split, resize
from sequela.pipeline.errors import MissingDatasetError

GTSRB_CLASSES = [
    "Speed limit (20km/h)", "Speed limit (30km/h)", "Speed limit (50km/h)", "Speed limit (60km/h)",
    "Speed limit (70km/h)", "Speed limit (80km/h)", "End of speed limit (80km/h)",
    "Speed limit (100km/h)", "Speed limit (120km/h)", "No passing",
    "No passing for vehicles over 3.5 metric tons", "Right-of-way at the next intersection",
    "Priority road", "Yield", "Stop", "No vehicles", "Vehicles over 3.5 metric tons prohibited",
    "No entry", "General caution", "Dangerous curve to the left", "Dangerous curve to the right",
    "Double curve", "Bumpy road", "Slippery road", "Road narrows on the right", "Road work",
    "Traffic signals", "Pedestrians", "Children crossing", "Bicycles crossing", "Beware of ice/snow",
    "Wild animals crossing", "End of all speed and passing limits", "Turn right ahead",
    "Turn left ahead", "Ahead only", "Go straight or right", "Go straight or left", "Keep right",
    "Keep left", "Roundabout mandatory", "End of no passing",
    "End of no passing by vehicles over 3.5 metric tons",
]  # fmt: skip
# torchvision reads STL-10's names from class_names.txt; these are the same, for a copy without it.
STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


def _split(images, labels, size: int | None = None) -> Split:
    """(N, H, W) grey or (N, C, H, W) images and labels -> a Split, optionally resized."""
    x = torch.as_tensor(np.asarray(images))
    if x.ndim == 3:
        x = x[:, None]
    if size is not None:  # in chunks, so the float copy that resizing makes stays small
        x = torch.cat([resize(chunk, size) for chunk in x.split(1000)])
    return Split(x.contiguous(), torch.as_tensor(np.asarray(labels), dtype=torch.int64))


def _read_mnist(cls, root: Path) -> tuple[Split, Split, list[str]]:
    train, test = (cls(root, train=flag, download=True) for flag in (True, False))
    return _split(train.data, train.targets), _split(test.data, test.targets), train.classes


def _read_cifar(cls, root: Path) -> tuple[Split, Split, list[str]]:
    train, test = (cls(root, train=flag, download=True) for flag in (True, False))
    # torchvision keeps CIFAR as (N, H, W, C)
    return (
        _split(train.data.transpose(0, 3, 1, 2), train.targets),
        _split(test.data.transpose(0, 3, 1, 2), test.targets),
        train.classes,
    )


def _read_svhn(cls, root: Path) -> tuple[Split, Split, list[str]]:
    # torchvision already maps SVHN's label 10 (the digit 0) to 0.
    train, test = (cls(root, split=split, download=True) for split in ("train", "test"))
    return _split(train.data, train.labels), _split(test.data, test.labels), [str(d) for d in range(10)]


def _read_stl10(cls, root: Path) -> tuple[Split, Split, list[str]]:
    train, test = (cls(root, split=split, download=True) for split in ("train", "test"))
    classes = getattr(train, "classes", STL10_CLASSES)
    return _split(train.data, train.labels, 32), _split(test.data, test.labels, 32), classes


def _read_gtsrb(cls, root: Path) -> tuple[Split, Split, list[str]]:
    # Official images range from 15x15 to 250x250 pixels; PIL's bilinear filter antialiases when it
    # shrinks, like `data.resize`.
    def to_32(image: Image.Image) -> np.ndarray:
        return np.asarray(image.resize((32, 32), Image.BILINEAR)).transpose(2, 0, 1)

    splits = []
    for split in ("train", "test"):
        ds = cls(root, split=split, transform=to_32, download=True)
        images, labels = zip(*(ds[i] for i in range(len(ds))))
        splits.append(_split(np.stack(images), labels))
        if split == "train":  # torchvision keeps each sample's path in `_samples`, in index order
            splits[0].groups = gtsrb_tracks([path for path, _ in ds._samples])
    return splits[0], splits[1], list(GTSRB_CLASSES)


def gtsrb_tracks(paths: list[str]) -> torch.Tensor:
    """Group ids of GTSRB training images: one per track, the 30 frames of one physical sign that a
    file `Training/<class>/<track>_<frame>.ppm` belongs to. Track numbers restart in every class
    folder, so a track is the pair (class folder, track number); ids number the pairs in sorted
    order. The official test images are single frames named by a running number: no tracks there."""
    pairs = []
    for path in paths:
        path = Path(path)
        track, _, frame = path.stem.partition("_")
        if not (path.parent.name.isdigit() and track.isdigit() and frame.isdigit()):
            raise ValueError(
                f"gtsrb: {path} is not named Training/<class>/<track>_<frame>.ppm, as the official "
                "training images are; the splits keep each track together and need its number"
            )
        pairs.append((int(path.parent.name), int(track)))
    _, ids = np.unique(np.array(pairs, dtype=np.int64).reshape(-1, 2), axis=0, return_inverse=True)
    return torch.from_numpy(ids.reshape(-1).astype(np.int64))


@dataclass(frozen=True)
class _Source:
    cls: type  # the torchvision dataset class
    read: Callable[[type, Path], tuple[Split, Split, list[str]]]
    files: tuple[str, ...]  # what must exist under root (a `.gz` may also be there extracted)
    how: str  # how to supply the files by hand; {root} is filled in
    note: str = ""


def _under(folder: str, names) -> tuple[str, ...]:
    return tuple(f"{folder}/{name}" for name in names)


def _mnist_files(folder: str) -> tuple[str, ...]:
    return _under(f"{folder}/raw", [name for name, _ in tvd.MNIST.resources])


def _from_torchvision_copy(folder: str) -> str:
    # writable, because torchvision extracts the .gz files next to themselves
    return (
        f"copy a torchvision {folder}/ folder there, e.g. `cp -r <a torchvision root>/{folder} {{root}}/ "
        f"&& chmod -R u+w {{root}}/{folder}` from the project root, or let torchvision download it online"
    )


def _from_archive(cls) -> str:
    return f"download {cls.url} and unpack it there: `tar -xzf {cls.filename} -C {{root}}`"


CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
# torchvision checks STL-10's unlabelled file too, although only the labelled splits are used here.
STL10_FILES = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "unlabeled_X.bin"]

_SOURCES = {
    "mnist": _Source(tvd.MNIST, _read_mnist, _mnist_files("MNIST"), _from_torchvision_copy("MNIST")),
    "fashion-mnist": _Source(
        tvd.FashionMNIST, _read_mnist, _mnist_files("FashionMNIST"), _from_torchvision_copy("FashionMNIST")
    ),
    "cifar10": _Source(
        tvd.CIFAR10, _read_cifar, _under("cifar-10-batches-py", CIFAR10_FILES), _from_archive(tvd.CIFAR10)
    ),
    "cifar100": _Source(
        tvd.CIFAR100,
        _read_cifar,
        _under("cifar-100-python", ["train", "test", "meta"]),
        _from_archive(tvd.CIFAR100),
    ),
    "svhn": _Source(
        tvd.SVHN,
        _read_svhn,
        ("train_32x32.mat", "test_32x32.mat"),
        "download http://ufldl.stanford.edu/housenumbers/train_32x32.mat and test_32x32.mat into {root}/",
    ),
    "stl10": _Source(
        tvd.STL10,
        _read_stl10,
        _under("stl10_binary", STL10_FILES),
        _from_archive(tvd.STL10),
        note=", labelled splits, 96x96 resized to 32x32",
    ),
    "gtsrb": _Source(
        tvd.GTSRB,
        _read_gtsrb,
        ("gtsrb/GTSRB/Training/", "gtsrb/GTSRB/Final_Test/Images/", "gtsrb/GT-final_test.csv"),
        "unpack an archive of gtsrb/ in this layout there (`tar -xJf <archive> -C {root}` from the "
        "project root), or unzip GTSRB-Training_fixed.zip, GTSRB_Final_Test_Images.zip and "
        "GTSRB_Final_Test_GT.zip from https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/ "
        "into {root}/gtsrb/",
        note=", resized to 32x32",
    ),
}


@contextmanager
def _socket_timeout(seconds: float):
    """torchvision opens URLs without a timeout; where a firewall drops packets silently, that would
    hang for minutes per file. A timeout per socket operation does not cut a slow but live download."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _present(path: Path) -> bool:
    return path.exists() or (path.suffix == ".gz" and path.with_suffix("").exists())


def load(name: str, root: Path) -> Dataset:
    """Load `name` (one of `_SOURCES`) from `root`, downloading it there where a network exists."""
    source = _SOURCES[name]
    root = Path(root).expanduser().absolute()
    missing = [f for f in source.files if not _present(root / f)]
    try:
        with _socket_timeout(30):
            train, test, classes = source.read(source.cls, root)
    except (OSError, RuntimeError) as err:  # URLError is an OSError; torchvision raises RuntimeError
        if not missing:
            found = "all found, but torchvision rejected them"
        else:
            found = "none found" if len(missing) == len(source.files) else f"missing {', '.join(missing)}"
        reason = " ".join(f"{type(err).__name__}: {err}".split())  # torchvision's can span lines
        raise MissingDatasetError(
            f"{name}: looked for {', '.join(source.files)} in {root} ({found}) and could not download "
            f"them ({reason}). To supply them, {source.how.format(root=root)}."
        ) from err
    origin = f"torchvision.datasets.{source.cls.__name__} (root={root}){source.note}"
    return Dataset(name, list(classes), train, test, origin)
