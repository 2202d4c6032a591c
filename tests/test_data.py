import torch

from sequela.datasets import sizes, splits
from sequela.sources import loaders


def test_digits_are_16x16_uint8_with_a_stratified_seeded_split():
    ds = loaders.load("digits", "unused", seed=0, test_fraction=0.25)
    assert ds.train.x.dtype == torch.uint8 and ds.train.x.shape[1:] == (1, 16, 16)
    assert len(ds.train) + len(ds.test) == 1797 and ds.num_classes == 10
    assert int(ds.train.x.max()) == 255 and int(ds.train.x.min()) == 0
    # nearest-neighbour enlargement: every 2x2 block holds one value
    x = ds.train.x[:, 0]
    assert torch.equal(x[:, ::2, ::2], x[:, 1::2, 1::2])
    share = torch.bincount(ds.test.y, minlength=10) / torch.bincount(torch.cat([ds.train.y, ds.test.y]))
    assert (share - 0.25).abs().max() < 0.02  # stratified
    again = loaders.load("digits", "unused", seed=0, test_fraction=0.25)
    assert torch.equal(again.test.x, ds.test.x)
    other = loaders.load("digits", "unused", seed=1, test_fraction=0.25)
    assert not torch.equal(other.test.y, ds.test.y)


def test_sequela_splits_are_disjoint_carvings(tmp_path):
    ds = loaders.load("digits", "unused", seed=0, test_fraction=0.25)
    out = splits.reserve_sequela_splits(ds, shadow_fraction=0.5, holdout_fraction=0.2, seed=0)
    assert len(out.train) + len(out.shadow) == len(ds.train)
    assert abs(len(out.train) - len(out.shadow)) <= 1  # the shadow model trains on as many as the target
    assert len(out.test) + len(out.holdout) + len(out.shadow_out) == len(ds.test)
    assert len(out.holdout) == len(out.shadow_out) == round(0.2 * len(ds.test))
    # digits has duplicate images, so disjointness is checked on the carved index sets' images
    # against the rest only where an image occurs once in the whole dataset.
    flat = lambda s: [bytes(row) for row in s.x.flatten(1).numpy()]  # noqa: E731
    everything = flat(ds.train) + flat(ds.test)
    unique = {img for img in everything if everything.count(img) == 1}
    parts = [set(flat(getattr(out, name))) & unique for name in ("train", "shadow", "test", "holdout", "shadow_out")]
    assert all(not a & b for i, a in enumerate(parts) for b in parts[i + 1 :])
    splits.save_prepared(out, tmp_path)
    back, meta = splits.load_prepared(tmp_path)
    assert torch.equal(back.holdout.x, out.holdout.x) and torch.equal(back.shadow_out.y, out.shadow_out.y)
    assert meta["sizes"]["shadow"] == len(out.shadow)
    # params.yaml is checked against sizes known before any file is read: they must be these
    assert len(out.train) == sizes.target_train_size("digits", 0.25, 0.5)
    assert out.train.x.shape[-1] == sizes.IMAGE_SIDE["digits"]
    assert len(meta["mean"]) == 1 and 0 < meta["std"][0] < 1


def test_clean_subset_draws_the_requested_share_without_repeats():
    idx = splits.clean_subset(1000, 0.05, seed=3)
    assert len(idx) == 50 and len(set(idx.tolist())) == 50 and int(idx.max()) < 1000
    assert torch.equal(idx, splits.clean_subset(1000, 0.05, seed=3))
    assert len(splits.clean_subset(1000, 1.0, seed=3)) == 1000


def test_unknown_dataset_is_refused():
    import pytest

    with pytest.raises(ValueError, match="dataset: 'imagenet'"):
        loaders.load("imagenet", "unused")


def test_the_digits_variants_are_digits_turned_or_mirrored_with_the_same_labels_and_splits():
    ds = loaders.load("digits", "unused", seed=0, test_fraction=0.25)
    mirror = loaders.load("digits-mirror", "unused", seed=0, test_fraction=0.25)
    turned = loaders.load("digits-rot90", "unused", seed=0, test_fraction=0.25)
    for split in ("train", "test"):
        plain, m, t = getattr(ds, split), getattr(mirror, split), getattr(turned, split)
        assert torch.equal(m.y, plain.y) and torch.equal(t.y, plain.y)
        assert torch.equal(m.x.flip(-1), plain.x)  # column j is column 15 - j
        assert torch.equal(torch.rot90(t.x, -1, dims=(2, 3)), plain.x)
        assert not torch.equal(m.x, plain.x) and not torch.equal(t.x, m.x)
    assert mirror.classes == ds.classes and mirror.name == "digits-mirror"


# --- group-aware carving (GTSRB's tracks) -----------------------------------------------------------


def grouped_dataset(seed: int = 0) -> splits.Dataset:
    """Five classes, each of 4 to 9 groups ("tracks") of 5 to 12 rows of one label; no test groups."""
    g = torch.Generator().manual_seed(seed)
    labels, groups = [], []
    for c in range(5):
        for _ in range(int(torch.randint(4, 10, (1,), generator=g))):
            size = int(torch.randint(5, 13, (1,), generator=g))
            labels += [c] * size
            groups += [len(set(groups))] * size
    perm = torch.randperm(len(labels), generator=g)  # a group's rows need not sit side by side
    y, groups = torch.tensor(labels)[perm], torch.tensor(groups)[perm]
    x = torch.randint(0, 256, (len(y), 1, 4, 4), dtype=torch.uint8, generator=g)
    test = splits.Split(torch.randint(0, 256, (60, 1, 4, 4), dtype=torch.uint8, generator=g), torch.arange(60) % 5)
    return splits.Dataset("grouped", [str(c) for c in range(5)], splits.Split(x, y, groups), test, "fixture")


def groups_of(split: splits.Split, rows=None) -> set:
    return set((split.groups if rows is None else split.groups[rows]).tolist())


def test_a_grouped_training_split_is_carved_by_whole_groups_near_each_class_share(tmp_path):
    ds = grouped_dataset()
    out = splits.reserve_sequela_splits(ds, shadow_fraction=0.5, holdout_fraction=0.2, seed=0)
    assert len(out.train) + len(out.shadow) == len(ds.train)
    assert not groups_of(out.train) & groups_of(out.shadow)  # no group on both sides
    assert groups_of(out.train) | groups_of(out.shadow) == groups_of(ds.train)
    for split in (out.train, out.shadow):  # every row keeps its own label and group
        for gid in split.groups.unique():
            assert split.y[split.groups == gid].unique().numel() == 1
    largest = int(ds.train.groups.bincount().max())
    assert abs(len(out.shadow) - 0.5 * len(ds.train)) <= largest / 2  # the carried remainder
    per_class = out.shadow.y.bincount(minlength=5).double() / ds.train.y.bincount(minlength=5)
    assert ((per_class - 0.5).abs() * ds.train.y.bincount(minlength=5) <= 1.5 * largest).all()
    assert out.test.groups is None and out.holdout.groups is None  # the test split has none to keep
    again = splits.reserve_sequela_splits(ds, shadow_fraction=0.5, holdout_fraction=0.2, seed=0)
    assert torch.equal(again.shadow.groups, out.shadow.groups)  # seeded
    other = splits.reserve_sequela_splits(ds, shadow_fraction=0.5, holdout_fraction=0.2, seed=1)
    assert not torch.equal(other.shadow.groups, out.shadow.groups)
    splits.save_prepared(out, tmp_path)
    back, meta = splits.load_prepared(tmp_path)
    assert torch.equal(back.train.groups, out.train.groups) and torch.equal(back.shadow.groups, out.shadow.groups)
    assert back.test.groups is None
    assert meta["groups"] == {"train": len(groups_of(out.train)), "shadow": len(groups_of(out.shadow))}


def test_a_split_keeps_its_groups_through_subset_sample_and_to():
    split = grouped_dataset().train
    rows = torch.tensor([3, 0, 7])
    assert torch.equal(split.subset(rows).groups, split.groups[rows])
    assert torch.equal(split.subset(split.y == 2).groups, split.groups[split.y == 2])
    assert len(split.sample(10, seed=0).groups) == 10 and split.to("cpu").groups is not None


def test_the_defenders_share_of_a_grouped_split_is_whole_groups_holding_the_share():
    train = grouped_dataset().train
    n = len(train)
    for fraction in (0.05, 0.2, 0.5):
        idx = splits.clean_subset(n, fraction, seed=3, groups=train.groups)
        rest = torch.ones(n, dtype=torch.bool)
        rest[idx] = False
        assert not groups_of(train, idx) & groups_of(train, rest)  # defender's share vs the rest
        assert len(idx) >= round(fraction * n)  # rounded up to whole groups: still one defender batch
        assert len(idx) - round(fraction * n) < int(train.groups.bincount().max())
        assert torch.equal(idx, idx.sort().values) and len(idx.unique()) == len(idx)
        assert torch.equal(idx, splits.clean_subset(n, fraction, seed=3, groups=train.groups))
    assert len(splits.clean_subset(n, 1.0, seed=3, groups=train.groups)) == n


def test_members_seen_by_the_defender_and_unseen_ones_share_no_group():
    from sequela.measures.membership import member_groups

    train = grouped_dataset().train
    n, groups = len(train), train.groups
    poisoned = torch.tensor([0, 1, 2])
    defender = splits.clean_subset(n, 0.3, seed=7, groups=groups)
    split = member_groups(n, n, 7, poisoned, defender, groups=groups)
    assert not groups_of(train, split["seen"]) & groups_of(train, split["unseen"])
    assert not set(split["all"].tolist()) & set(poisoned.tolist())
    # a defender's share drawn frame by frame touches groups it did not take whole: their other
    # rows are not unseen, so the groups still do not cross
    frames = splits.clean_subset(n, 0.3, seed=7)
    split = member_groups(n, n, 7, poisoned, frames, groups=groups)
    assert not groups_of(train, split["seen"]) & groups_of(train, split["unseen"])
    assert set(split["seen"].tolist()) > set(frames.tolist()) - set(poisoned.tolist())
    # without groups it is the row-by-row split it always was
    plain = member_groups(n, n, 7, poisoned, frames)
    assert set(plain["seen"].tolist()) == set(frames.tolist()) - set(poisoned.tolist())


# sha256 of digits' prepared tensors under params.yaml's data section (seed 0, test 0.25, shadow 0.5,
# holdout 0.2): datasets without group ids are carved as they always were, and every digits figure
# downstream rests on these bytes.
DIGITS_PREPARED_SHA256 = "3008167dc9d849744767798c5bdd866e1beb1b70048cdecc9f78b04ddd2322e9"


def test_digits_carries_no_groups_and_is_prepared_byte_for_byte_as_before(tmp_path):
    ds = loaders.load("digits", "unused", seed=0, test_fraction=0.25)
    assert ds.train.groups is None
    out = splits.reserve_sequela_splits(ds, shadow_fraction=0.5, holdout_fraction=0.2, seed=0)
    splits.save_prepared(out, tmp_path)
    back, meta = splits.load_prepared(tmp_path)
    assert meta["sha256"] == DIGITS_PREPARED_SHA256 and "groups" not in meta
    assert all(split.groups is None for split in (back.train, back.shadow, back.test))
    # the defender's share without groups: the head of one seeded permutation, as before
    idx = splits.clean_subset(len(back.train), 0.1, seed=0)
    assert torch.equal(
        idx, torch.randperm(len(back.train), generator=torch.Generator().manual_seed(0))[:67].sort().values
    )
