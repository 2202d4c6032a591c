"""Datasets as the pipeline holds them: uint8 images (N, C, H, W), int64 labels and class names.

Images stay uint8 until a batch is drawn (see `engine.TensorLoader`), so a whole 32x32 dataset sits
in memory, or on the GPU, at one byte per pixel. Normalisation lives inside the model
(`models.Normalize`), which keeps attacks, defenses and sequela measures in plain [0, 1] pixel space.

Where each dataset comes from is `sources/loaders.py`; this module splits, saves and loads prepared ones.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sequela.pipeline.io import atomic_write_json, load_tensors, read_json, save_tensors


@dataclass
class Split:
    """One labelled split: uint8 images (N, C, H, W), int64 labels (N,) and, where the source has
    them, int64 group ids (N,): rows of one group are near-duplicates (GTSRB's tracks, 30 frames of
    one physical sign), so every carve keeps a group on one side."""

    x: torch.Tensor
    y: torch.Tensor
    groups: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: torch.Tensor) -> "Split":
        groups = None if self.groups is None else self.groups[torch.as_tensor(index, device=self.groups.device)]
        return Split(self.x[index], self.y[index], groups)

    def sample(self, n: int, seed: int) -> "Split":
        """A seeded `n` of the rows, or the whole split if it has no more than `n`. Per-epoch curves
        and re-injection epochs are measured on such samples: on GTSRB's 7,578 test images,
        measuring every epoch on all of them cost about a third as much as the training it tracked."""
        if len(self) <= n:
            return self
        return self.subset(torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n])

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.x.to(device), self.y.to(device), None if self.groups is None else self.groups.to(device))


@dataclass
class Dataset:
    """`train` and `test` are the splits the attacker trains on and every CA / ASR is measured on.
    The membership-inference splits, carved once in `prepare` and used for nothing else:
    - `holdout` (from the official test split): the target models' non-members;
    - `shadow` (from the official training split): the shadow model's training set (its members);
    - `shadow_out` (from the official test split): the shadow model's non-members."""

    name: str
    classes: list[str]
    train: Split
    test: Split
    source: str
    shadow: Split | None = None
    holdout: Split | None = None
    shadow_out: Split | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.x.shape[1:])

    def channel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the training images in [0, 1], for the model's Normalize."""
        x = self.train.x.double() / 255.0
        return x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).tolist()


# The registry: names, class counts and sizes known before any file is read (sequela/datasets/sizes.py).


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 images (N, C, H, W) to size x size with antialiased bilinear interpolation."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    out = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def carve(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Split off a stratified, seeded `fraction` of `split`: returns (rest, carved). A split with
    group ids is carved by whole groups (`carve_groups`)."""
    if fraction <= 0.0:
        return split, Split(split.x[:0], split.y[:0], None if split.groups is None else split.groups[:0])
    if split.groups is not None:
        take = carve_groups(split.y.numpy(), split.groups.numpy(), fraction, seed)
        keep = np.setdiff1d(np.arange(len(split)), take)
        return split.subset(torch.from_numpy(keep)), split.subset(torch.from_numpy(take))
    from sklearn.model_selection import train_test_split

    keep, take = train_test_split(
        np.arange(len(split)), test_size=fraction, random_state=seed, stratify=split.y.numpy()
    )
    return split.subset(torch.from_numpy(np.sort(keep))), split.subset(torch.from_numpy(np.sort(take)))


def carve_groups(y: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted row indices of a stratified, seeded `fraction` of the rows, made of whole groups.

    Each group counts towards its most common label. Class by class, groups are taken in a seeded
    order for as long as each one brings the taken rows nearer that class's share; what a class
    falls short of or overshoots is carried into the next class's share, so the total stays within
    half a group of `fraction` of the rows while every class keeps about its share."""
    ids, row_group = np.unique(groups, return_inverse=True)
    sizes = np.bincount(row_group, minlength=len(ids))
    per_label = np.zeros((len(ids), int(y.max()) + 1), dtype=np.int64)
    np.add.at(per_label, (row_group, y), 1)
    label = per_label.argmax(1)
    rng = np.random.default_rng(seed)
    taken_group = np.zeros(len(ids), dtype=bool)
    carry = 0.0
    for c in np.unique(label):
        members = rng.permutation(np.flatnonzero(label == c))
        goal, taken = fraction * sizes[members].sum() + carry, 0
        for g in members:
            if abs(taken + sizes[g] - goal) > abs(taken - goal):
                break
            taken_group[g], taken = True, taken + sizes[g]
        carry = goal - taken
    return np.flatnonzero(taken_group[row_group])


def reserve_sequela_splits(ds: Dataset, shadow_fraction: float, holdout_fraction: float, seed: int) -> Dataset:
    """Carve the membership-inference splits, as ML-Doctor's equal shares do: `shadow_fraction` of
    the training split for the shadow model (0.5 gives it as many training images as the target),
    and twice `holdout_fraction` of the test split, one share for the target's non-members and one
    for the shadow's, so the four membership sets are disjoint. A training split with group ids
    (GTSRB's tracks) is carved by whole groups, so no near-duplicate of a shadow image is a target's
    training image."""
    train, shadow = carve(ds.train, shadow_fraction, seed)
    test, held = carve(ds.test, min(1.0, 2 * holdout_fraction), seed + 1)
    holdout, shadow_out = carve(held, 0.5, seed + 2) if len(held) >= 2 else (held, held)
    return Dataset(ds.name, ds.classes, train, test, ds.source, shadow, holdout, shadow_out)


def clean_subset(n_train: int, fraction: float, seed: int, groups: torch.Tensor | None = None) -> torch.Tensor:
    """Indices of the defender's clean data: a seeded `fraction` of the clean training split.

    Drawn in the defend stage, not in prepare, so sweeping `defense.clean_fraction` reruns only the
    defenses and what follows them. With the training split's group ids (`Split.groups`), whole
    groups are drawn in a seeded order until they hold the share, so no group is partly the
    defender's: its near-duplicates would otherwise sit on both sides of the "seen" / "unseen"
    membership groups."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"defense.clean_fraction: {fraction} is not in (0, 1]")
    n = max(1, round(fraction * n_train))
    g = torch.Generator().manual_seed(seed)
    if groups is None:
        return torch.randperm(n_train, generator=g)[:n].sort().values
    if len(groups) != n_train:
        raise ValueError(f"clean_subset: {len(groups)} group ids for {n_train} training rows")
    ids, row_group = torch.unique(groups.cpu(), return_inverse=True)
    order = torch.randperm(len(ids), generator=g)
    # rounded up to whole groups, so the share still holds the defender's batch that config checks
    reached = torch.bincount(row_group, minlength=len(ids))[order].cumsum(0) >= n
    count = int(reached.to(torch.uint8).argmax()) + 1
    chosen = torch.zeros(len(ids), dtype=torch.bool)
    chosen[order[:count]] = True
    return torch.nonzero(chosen[row_group]).flatten()


def defender_rows(train: Split, fraction: float, seed: int) -> torch.Tensor:
    """`clean_subset` of the training split `train`, by its groups where it has them: the rows every
    stage that needs the defender's share (defend, sequela, ablate, export) draws alike."""
    return clean_subset(len(train), fraction, seed, groups=train.groups)


# --- the prepared form on disk: data.safetensors + meta.json -------------------------------------


SPLITS = ("train", "test", "shadow", "holdout", "shadow_out")


def save_prepared(ds: Dataset, out_dir: Path) -> None:
    tensors = {}
    for name in SPLITS:
        split = getattr(ds, name)
        if split is not None:
            tensors[f"{name}_x"], tensors[f"{name}_y"] = split.x, split.y
            if split.groups is not None:
                tensors[f"{name}_groups"] = split.groups
    save_tensors(tensors, out_dir / "data.safetensors")
    mean, std = ds.channel_stats()
    digest = hashlib.sha256()
    for key in sorted(tensors):
        digest.update(tensors[key].numpy().tobytes())
    meta = {
        "name": ds.name,
        "classes": ds.classes,
        "image_shape": list(ds.image_shape),
        "sizes": {name: len(getattr(ds, name)) for name in SPLITS if getattr(ds, name) is not None},
        "mean": [round(m, 6) for m in mean],
        "std": [round(s, 6) for s in std],
        "source": ds.source,
        "sha256": digest.hexdigest(),
    }
    grouped = {
        name: len(getattr(ds, name).groups.unique())
        for name in SPLITS
        if getattr(ds, name) is not None and getattr(ds, name).groups is not None
    }
    if grouped:  # only where the source has group ids: the others' meta.json holds no such key
        meta["groups"] = grouped
    atomic_write_json(meta, out_dir / "meta.json")


def load_prepared(path: str | Path) -> tuple[Dataset, dict]:
    path = Path(path)
    meta = read_json(path / "meta.json")
    t = load_tensors(path / "data.safetensors")
    splits = {
        name: Split(t[f"{name}_x"], t[f"{name}_y"], t.get(f"{name}_groups")) for name in SPLITS if f"{name}_x" in t
    }
    return Dataset(name=meta["name"], classes=meta["classes"], source=meta["source"], **splits), meta
