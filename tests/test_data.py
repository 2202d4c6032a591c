import torch

from sequela import catalog, data, sources


def test_digits_are_16x16_uint8_with_a_stratified_seeded_split():
    ds = sources.load("digits", "unused", seed=0, test_fraction=0.25)
    assert ds.train.x.dtype == torch.uint8 and ds.train.x.shape[1:] == (1, 16, 16)
    assert len(ds.train) + len(ds.test) == 1797 and ds.num_classes == 10
    assert int(ds.train.x.max()) == 255 and int(ds.train.x.min()) == 0
    # nearest-neighbour enlargement: every 2x2 block holds one value
    x = ds.train.x[:, 0]
    assert torch.equal(x[:, ::2, ::2], x[:, 1::2, 1::2])
    share = torch.bincount(ds.test.y, minlength=10) / torch.bincount(torch.cat([ds.train.y, ds.test.y]))
    assert (share - 0.25).abs().max() < 0.02  # stratified
    again = sources.load("digits", "unused", seed=0, test_fraction=0.25)
    assert torch.equal(again.test.x, ds.test.x)
    other = sources.load("digits", "unused", seed=1, test_fraction=0.25)
    assert not torch.equal(other.test.y, ds.test.y)


def test_sequela_splits_are_disjoint_carvings(tmp_path):
    ds = sources.load("digits", "unused", seed=0, test_fraction=0.25)
    out = data.reserve_sequela_splits(ds, shadow_fraction=0.5, holdout_fraction=0.2, seed=0)
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
    assert all(not a & b for i, a in enumerate(parts) for b in parts[i + 1:])
    data.save_prepared(out, tmp_path)
    back, meta = data.load_prepared(tmp_path)
    assert torch.equal(back.holdout.x, out.holdout.x) and torch.equal(back.shadow_out.y, out.shadow_out.y)
    assert meta["sizes"]["shadow"] == len(out.shadow)
    # params.yaml is checked against sizes known before any file is read: they must be these
    assert len(out.train) == catalog.target_train_size("digits", 0.25, 0.5)
    assert out.train.x.shape[-1] == catalog.IMAGE_SIDE["digits"]
    assert len(meta["mean"]) == 1 and 0 < meta["std"][0] < 1


def test_clean_subset_draws_the_requested_share_without_repeats():
    idx = data.clean_subset(1000, 0.05, seed=3)
    assert len(idx) == 50 and len(set(idx.tolist())) == 50 and int(idx.max()) < 1000
    assert torch.equal(idx, data.clean_subset(1000, 0.05, seed=3))
    assert len(data.clean_subset(1000, 1.0, seed=3)) == 1000


def test_unknown_dataset_is_refused():
    import pytest

    with pytest.raises(ValueError, match="dataset: 'imagenet'"):
        sources.load("imagenet", "unused")


def test_the_digits_variants_are_digits_turned_or_mirrored_with_the_same_labels_and_splits():
    ds = sources.load("digits", "unused", seed=0, test_fraction=0.25)
    mirror = sources.load("digits-mirror", "unused", seed=0, test_fraction=0.25)
    turned = sources.load("digits-rot90", "unused", seed=0, test_fraction=0.25)
    for split in ("train", "test"):
        plain, m, t = getattr(ds, split), getattr(mirror, split), getattr(turned, split)
        assert torch.equal(m.y, plain.y) and torch.equal(t.y, plain.y)
        assert torch.equal(m.x.flip(-1), plain.x)  # column j is column 15 - j
        assert torch.equal(torch.rot90(t.x, -1, dims=(2, 3)), plain.x)
        assert not torch.equal(m.x, plain.x) and not torch.equal(t.x, m.x)
    assert mirror.classes == ds.classes and mirror.name == "digits-mirror"
