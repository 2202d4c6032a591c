"""torchvision_sets: real MNIST, Fashion-MNIST and GTSRB from an offline copy; CIFAR, SVHN and
STL-10 from tiny fixtures in torchvision's on-disk formats; and the offline error for missing files."""

import os
import pickle
import shutil
import socket
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from sequela.datasets import sizes
from sequela.datasets.splits import resize
from sequela.pipeline.errors import MissingDatasetError
from sequela.sources import torchvision_sets

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def shared(path: str) -> Path:
    if not (SHARED / path).exists():
        pytest.skip(f"{SHARED / path} is not here")
    return SHARED / path


def md5_as_existence(monkeypatch, *modules: str) -> None:
    """The fixtures are not the official files, so torchvision's md5 check becomes an existence check."""
    for module in modules:
        exists = lambda path, md5=None: os.path.isfile(path)  # noqa: E731
        monkeypatch.setattr(f"torchvision.datasets.{module}.check_integrity", exists)


def go_offline(monkeypatch) -> None:
    """Every download fails at once, as on a machine without a network, wherever the tests run."""

    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "offline test")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)


def images(rng, n: int, c: int = 3, size: int = 32) -> np.ndarray:
    return rng.integers(0, 256, size=(n, c, size, size), dtype=np.uint8)


def assert_split(split, x: np.ndarray, y) -> None:
    assert split.x.dtype == torch.uint8 and split.x.is_contiguous()
    assert split.y.dtype == torch.int64
    assert torch.equal(split.x, torch.from_numpy(x))
    assert split.y.tolist() == list(y)


# --- real data ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, folder, first_labels",
    [("mnist", "MNIST", (5, 7)), ("fashion-mnist", "FashionMNIST", (9, 9))],
)
def test_mnist_family_from_shared_copy(tmp_path, name, folder, first_labels):
    source = shared(f"torchvision/{folder}/raw")
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    for gz in source.glob("*.gz"):
        shutil.copyfile(gz, raw / gz.name)  # a writable copy: torchvision extracts beside the .gz

    ds = torchvision_sets.load(name, tmp_path)

    assert (len(ds.train), len(ds.test)) == (60000, 10000)
    assert ds.image_shape == (1, 28, 28) and ds.train.x.dtype == torch.uint8 and ds.test.x.is_contiguous()
    assert ds.train.y.dtype == torch.int64
    assert ds.train.y.unique().tolist() == ds.test.y.unique().tolist() == list(range(10))
    assert (ds.train.y[0].item(), ds.test.y[0].item()) == first_labels
    assert ds.num_classes == 10 and ds.name == name
    assert folder in ds.source and str(tmp_path) in ds.source


@pytest.fixture(scope="session")
def gtsrb_root(tmp_path_factory):
    """The shared archive, but of the training split only the first track (30 images) of each class.

    All 52k small files took 40 s to write and 60 s to delete on a busy disk; this is 14k. A subset of
    class folders would not do: torchvision numbers the classes by the folders it finds."""
    archive = shared("gtsrb-32px.tar.xz")
    root = tmp_path_factory.mktemp("gtsrb")
    with tarfile.open(archive) as tar:
        for member in tar:  # one pass through the xz stream
            if "/Training/" not in member.name or "/00000_" in member.name or member.isdir():
                tar.extract(member, root, filter="data")
    yield root
    shutil.rmtree(root)


def test_gtsrb_from_shared_copy(gtsrb_root):
    ds = torchvision_sets.load("gtsrb", gtsrb_root)  # one PPM file per image

    assert (len(ds.train), len(ds.test)) == (43 * 30, 12630) == (43 * 30, sizes.SPLIT_SIZES["gtsrb"][1])
    assert ds.image_shape == (3, 32, 32) and ds.test.x.shape == (12630, 3, 32, 32)
    assert ds.train.x.dtype == torch.uint8 and ds.train.x.is_contiguous() and ds.test.y.dtype == torch.int64
    assert ds.num_classes == 43 and ds.classes[14] == "Stop"
    assert ds.train.y.bincount().tolist() == [30] * 43
    counts = ds.test.y.bincount().tolist()  # the official per-class counts, four of them
    assert len(counts) == 43 and (counts[0], counts[1], counts[14], counts[42]) == (60, 720, 270, 90)
    assert ds.test.x.float().std() > 20  # real images, not blank


def test_gtsrb_training_images_carry_their_track_and_test_images_none(gtsrb_root):
    # the fixture holds track 00000 of every class: 43 tracks of 30 frames, one class each
    ds = torchvision_sets.load("gtsrb", gtsrb_root)
    groups = ds.train.groups
    assert groups is not None and groups.dtype == torch.int64 and len(groups) == len(ds.train)
    assert groups.unique().numel() == 43 and groups.bincount().tolist() == [30] * 43
    assert all(ds.train.y[groups == g].unique().numel() == 1 for g in groups.unique())
    assert ds.test.groups is None  # single frames named by a running number


def test_gtsrb_tracks_pair_the_class_folder_with_the_track_number():
    paths = [
        f"r/gtsrb/GTSRB/Training/{c:05d}/{t:05d}_{f:05d}.ppm"
        for c, t, f in [(0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0), (1, 0, 29), (0, 1, 7)]
    ]
    # track numbers restart in every class folder: (0, 0) and (1, 0) are different signs
    assert torchvision_sets.gtsrb_tracks(paths).tolist() == [0, 0, 1, 2, 2, 1]
    with pytest.raises(ValueError, match="00007.ppm is not named Training/<class>/<track>_<frame>.ppm"):
        torchvision_sets.gtsrb_tracks(["r/gtsrb/GTSRB/Training/00000/00007.ppm"])


# --- tiny fixtures in torchvision's formats -------------------------------------------------------


def dump(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def test_cifar10_fixture(tmp_path, monkeypatch):
    md5_as_existence(monkeypatch, "cifar")
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    train_x, train_y = images(rng, 10), rng.integers(0, 10, 10).tolist()
    test_x, test_y = images(rng, 3), [3, 0, 9]
    for i in range(5):  # CIFAR stores each image as 3072 bytes: red plane, green plane, blue plane
        part = slice(2 * i, 2 * i + 2)
        dump({"data": train_x[part].reshape(2, -1), "labels": train_y[part]}, folder / f"data_batch_{i + 1}")
    dump({"data": test_x.reshape(3, -1), "labels": test_y}, folder / "test_batch")
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    dump({"label_names": names}, folder / "batches.meta")

    ds = torchvision_sets.load("cifar10", tmp_path)

    assert_split(ds.train, train_x, train_y)
    assert_split(ds.test, test_x, test_y)
    assert ds.train.x[3, 2, 5, 7].item() == train_x[3, 2, 5, 7]  # blue channel, row 5, column 7
    assert ds.classes == names and ds.source.startswith("torchvision.datasets.CIFAR10")


def test_cifar100_fixture(tmp_path, monkeypatch):
    md5_as_existence(monkeypatch, "cifar")
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    train_x, train_y = images(rng, 4), [0, 99, 42, 7]
    test_x, test_y = images(rng, 2), [5, 98]
    for part, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        dump({"data": x.reshape(len(x), -1), "fine_labels": y, "coarse_labels": [0] * len(y)}, folder / part)
    names = [f"class{i}" for i in range(100)]
    dump({"fine_label_names": names, "coarse_label_names": [f"super{i}" for i in range(20)]}, folder / "meta")

    ds = torchvision_sets.load("cifar100", tmp_path)

    assert_split(ds.train, train_x, train_y)
    assert_split(ds.test, test_x, test_y)
    assert ds.classes == names and ds.num_classes == 100


def test_svhn_fixture(tmp_path, monkeypatch):
    from scipy.io import savemat

    md5_as_existence(monkeypatch, "svhn", "utils")  # SVHN's download re-checks through utils.download_url
    rng = np.random.default_rng(2)
    written = {}
    for split, digits in (("train", [1, 10, 5, 9]), ("test", [10, 3])):
        x = images(rng, len(digits))
        # .mat layout: X (32, 32, 3, N), y (N, 1) with the digit 0 stored as 10
        labels = np.array(digits, np.uint8)[:, None]
        savemat(tmp_path / f"{split}_32x32.mat", {"X": x.transpose(2, 3, 1, 0), "y": labels})
        written[split] = x

    ds = torchvision_sets.load("svhn", tmp_path)

    assert_split(ds.train, written["train"], [1, 0, 5, 9])
    assert_split(ds.test, written["test"], [0, 3])
    assert ds.train.x[2, 1, 30, 4].item() == written["train"][2, 1, 30, 4]
    assert ds.classes == [str(d) for d in range(10)]


def test_stl10_fixture(tmp_path, monkeypatch):
    md5_as_existence(monkeypatch, "stl10")
    rng = np.random.default_rng(3)
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    train_x, test_x = images(rng, 3, size=96), images(rng, 2, size=96)
    train_x[0] = np.array([10, 128, 250], np.uint8)[:, None, None]  # one flat image: resizing keeps it exact
    for split, x, labels in (("train", train_x, [1, 10, 4]), ("test", test_x, [2, 1])):
        # STL-10 stores each channel column-major and labels 1-based
        (folder / f"{split}_X.bin").write_bytes(x.transpose(0, 1, 3, 2).tobytes())
        (folder / f"{split}_y.bin").write_bytes(np.array(labels, np.uint8).tobytes())
    (folder / "unlabeled_X.bin").write_bytes(b"")  # torchvision insists on it; it is never read here
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (folder / "class_names.txt").write_text("\n".join(names) + "\n")

    ds = torchvision_sets.load("stl10", tmp_path)

    assert ds.image_shape == (3, 32, 32)
    assert_split(ds.train, resize(torch.from_numpy(train_x), 32).numpy(), [0, 9, 3])
    assert_split(ds.test, resize(torch.from_numpy(test_x), 32).numpy(), [1, 0])
    assert ds.train.x[0, :, 17, 3].tolist() == [10, 128, 250]
    assert ds.classes == names and "32x32" in ds.source


# --- missing files offline ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, looked_for, how",
    [
        ("cifar10", "cifar-10-batches-py/data_batch_1", "cifar-10-python.tar.gz"),
        ("mnist", "MNIST/raw/train-images-idx3-ubyte.gz", "cp -r <a torchvision root>/MNIST"),
        ("gtsrb", "gtsrb/GTSRB/Training", "tar -xJf <archive> -C"),
    ],
)
def test_missing_files_offline(tmp_path, monkeypatch, name, looked_for, how):
    go_offline(monkeypatch)

    with pytest.raises(MissingDatasetError) as caught:
        torchvision_sets.load(name, tmp_path)

    message = str(caught.value)
    assert name in message and looked_for in message and how in message
    assert f"in {tmp_path} " in message and "none found" in message
    assert socket.getdefaulttimeout() is None  # the download timeout was put back


def test_partly_missing_names_the_missing_files(tmp_path, monkeypatch):
    go_offline(monkeypatch)
    dump({"label_names": []}, tmp_path / "cifar-10-batches-py" / "batches.meta")

    with pytest.raises(MissingDatasetError) as caught:
        torchvision_sets.load("cifar10", tmp_path)
    message = str(caught.value)
    assert "(missing cifar-10-batches-py/data_batch_1, " in message and "/test_batch) " in message
