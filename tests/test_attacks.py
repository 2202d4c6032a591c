import pytest
import torch

from sequela.attacks.registry import ATTACKS, choose_poison_indices, load_artefact, save_artefact
from sequela.pipeline.errors import ConfigError


def test_badnets_stamps_exactly_its_square():
    x = torch.rand(5, 3, 16, 16)
    attack = ATTACKS["badnets"].create({"size": 3}, (x * 255).byte(), torch.zeros(5), 0, torch.Generator())
    out = attack.apply(x)
    changed = out != x
    assert torch.equal(out[:, :, 13:, 13:], torch.ones(5, 3, 3, 3))
    changed[:, :, 13:, 13:] = False
    assert not changed.any()


def test_blended_mixes_pattern_with_alpha_everywhere():
    x = torch.rand(4, 1, 8, 8)
    attack = ATTACKS["blended"].create(
        {"alpha": 0.2, "pattern_file": None}, x, torch.zeros(4), 0, torch.Generator().manual_seed(1)
    )
    pattern = attack.tensors["pattern"]
    assert torch.allclose(attack.apply(x), 0.8 * x + 0.2 * pattern)
    again = ATTACKS["blended"].create(
        {"alpha": 0.2, "pattern_file": None}, x, torch.zeros(4), 0, torch.Generator().manual_seed(1)
    )
    assert torch.equal(again.tensors["pattern"], pattern)  # seeded: the same trigger every run


def test_poison_indices_exact_share_from_non_target_classes():
    y = torch.arange(1000) % 10
    idx = choose_poison_indices(y, target=3, rate=0.1, generator=torch.Generator().manual_seed(0))
    assert len(idx) == 100 and len(set(idx.tolist())) == 100
    assert not (y[idx] == 3).any()


def test_poison_rate_too_large_for_non_target_images_is_refused():
    y = torch.zeros(100, dtype=torch.int64)
    y[:50] = 1
    with pytest.raises(ConfigError, match="attack.poison_rate"):
        choose_poison_indices(y, target=0, rate=0.6, generator=torch.Generator())


def test_poison_batch_relabels_only_flagged_rows():
    x, y = torch.rand(6, 1, 8, 8), torch.tensor([1, 2, 3, 1, 2, 3])
    attack = ATTACKS["badnets"].create({"size": 2}, x, y, 0, torch.Generator())
    flags = torch.tensor([True, False, True, False, False, False])
    px, py = attack.poison_batch(x, y, flags, target=0)
    assert py.tolist() == [0, 2, 0, 1, 2, 3]
    assert torch.equal(px[~flags], x[~flags]) and torch.equal(px[flags], attack.apply(x[flags]))


def test_artefact_round_trip(tmp_path):
    x = torch.rand(4, 3, 8, 8)
    attack = ATTACKS["blended"].create(
        {"alpha": 0.3, "pattern_file": None}, x, torch.zeros(4), 0, torch.Generator().manual_seed(2)
    )
    save_artefact(attack, torch.tensor([1, 3]), {"target": 0}, tmp_path)
    loaded, idx, meta = load_artefact(tmp_path)
    assert idx.tolist() == [1, 3] and meta["attack"] == "blended" and meta["params"]["alpha"] == 0.3
    assert torch.equal(loaded.apply(x), attack.apply(x))
