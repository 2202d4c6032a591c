"""LF, WaNet and InputAware: trigger properties, training-time extras, artefact round trips (CPU)."""

import pytest
import torch

from sequela import models
from sequela.attacks.registry import ATTACKS, choose_poison_indices, load_artefact, save_artefact
from sequela.attacks.inputaware import stamp
from sequela.attacks.lf import lowpass_mask
from sequela.attacks.wanet import identity_grid
from sequela.engine import BatchStream

# Small settings so every attack builds in well under a second.
SETTINGS = {
    "lf": {"eps": 0.1, "cutoff": 0.25, "steps": 15, "lr": 0.01, "batch_size": 16},
    "wanet": {"k": 4, "s": 0.5, "grid_rescale": 1, "cross_ratio": 2},
    "inputaware": {"width": 4, "mask_density": 0.032, "lambda_div": 1.0, "lambda_norm": 100.0, "mask_epochs": 2,
                   "pattern_epochs": 1, "surrogate_width": 4, "surrogate_poison_rate": 0.1, "cross_ratio": 1,
                   "lr": 0.01, "batch_size": 16},
}
NEW = tuple(SETTINGS)


def images(n: int = 64, c: int = 1, size: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, size, size), generator=g, dtype=torch.uint8), torch.arange(n) % 4


def build(name: str, c: int = 1, size: int = 16, seed: int = 0, **overrides):
    x, y = images(c=c, size=size)
    context = {}
    if ATTACKS[name].needs_clean_model:  # LF works against any classifier; an untrained one will do
        torch.manual_seed(0)
        context["clean_model"] = models.small_cnn(c, 4, [0.5] * c, [0.3] * c, width=4)
    params = {**SETTINGS[name], **overrides}
    return ATTACKS[name].create(params, x, y, 0, torch.Generator().manual_seed(seed), **context)


@pytest.fixture(scope="module")
def attacks():
    return {name: build(name) for name in NEW}


@pytest.mark.parametrize("c,size,cutoff", [(1, 16, 0.25), (3, 32, 0.5), (3, 15, 0.3)])
def test_lf_delta_has_no_energy_above_cutoff_and_respects_bound(c, size, cutoff):
    eps = 0.1
    attack = build("lf", c=c, size=size, cutoff=cutoff, eps=eps)
    delta = attack.tensors["delta"].double()
    assert delta.shape == (c, size, size)
    power = torch.fft.fft2(delta).abs() ** 2
    outside = ~lowpass_mask(size, size, cutoff)
    assert outside.any() and power[:, outside].sum() <= 1e-12 * power.sum()
    assert 0 < delta.abs().max() <= eps + 1e-6
    x = torch.rand(5, c, size, size)
    assert torch.equal(attack.apply(x), (x + attack.tensors["delta"]).clamp(0, 1))


def test_lf_leaves_the_clean_model_as_it_was():
    x, y = images()
    model = models.small_cnn(1, 4, [0.5], [0.3], width=4).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ATTACKS["lf"].create(SETTINGS["lf"], x, y, 0, torch.Generator().manual_seed(0), clean_model=model)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_wanet_warp_is_fixed_and_small(attacks):
    attack, s = attacks["wanet"], SETTINGS["wanet"]["s"]
    x = torch.rand(4, 3, 16, 16)
    assert torch.equal(attack.apply(x), attack.apply(x))
    assert torch.equal(build("wanet").tensors["grid"], attack.tensors["grid"])  # seeded
    assert not torch.equal(attack.apply(x), x)
    # grid_sample(align_corners=True): one pixel = 2 / (H - 1) grid units; offsets are s * field / H.
    h = 16
    shift = (attack.tensors["grid"] - identity_grid(h, h)).abs() * (h - 1) / 2
    bound = s * attack.tensors["field"].abs().max() * (h - 1) / (2 * h)
    assert 0 < shift.max() <= bound + 1e-5 and bound < 2


def test_wanet_moves_a_single_dot_no_further_than_the_warp_allows(attacks):
    attack = attacks["wanet"]
    bound = float(SETTINGS["wanet"]["s"] * attack.tensors["field"].abs().max() / 2)
    x = torch.zeros(1, 1, 16, 16)
    x[0, 0, 8, 7] = 1.0
    lit = torch.nonzero(attack.apply(x)[0, 0] > 0)
    # Bilinear sampling reads a pixel's value within one pixel of where the grid points.
    assert len(lit) > 0 and (lit - torch.tensor([8, 7])).abs().max() < 1 + bound


def test_wanet_noise_rows_keep_their_labels_and_get_a_jittered_warp(attacks):
    attack = attacks["wanet"]
    x, y = torch.rand(32, 1, 16, 16), torch.arange(32) % 4 + 1
    poisoned = torch.zeros(32, dtype=torch.bool)
    poisoned[[3, 10, 20]] = True
    px, py = attack.poison_batch(x, y, poisoned, 0, torch.Generator().manual_seed(0))
    assert torch.equal(py, torch.where(poisoned, 0, y))
    assert torch.equal(px[poisoned], attack.apply(x[poisoned]))
    noise = (px != x).flatten(1).any(1) & ~poisoned
    assert int(noise.sum()) == 2 * 3  # cross_ratio x the poisoned rows
    assert not torch.allclose(px[noise], attack.apply(x[noise]))  # the warp plus random jitter


def test_inputaware_triggers_differ_between_inputs(attacks):
    attack = attacks["inputaware"]
    x = torch.rand(8, 1, 16, 16)
    residual = attack.apply(x) - x
    pattern, mask = attack.nets()
    assert torch.equal(attack.apply(x), attack.apply(x))
    for i in range(1, 8):
        assert not torch.allclose(mask(x[:1]), mask(x[i:i + 1]))
        assert not torch.allclose(residual[0], residual[i])
    assert ((mask(x) >= 0) & (mask(x) <= 1)).all() and ((pattern(x) >= 0) & (pattern(x) <= 1)).all()


def test_inputaware_cross_trigger_rows_keep_their_labels(attacks):
    attack = attacks["inputaware"]
    x, y = torch.rand(32, 1, 16, 16), torch.arange(32) % 4 + 1
    poisoned = torch.zeros(32, dtype=torch.bool)
    poisoned[[1, 5, 9, 30]] = True
    px, py = attack.poison_batch(x, y, poisoned, 0, torch.Generator().manual_seed(0))
    assert torch.equal(py, torch.where(poisoned, 0, y))
    assert torch.equal(px[poisoned], attack.apply(x[poisoned]))
    cross = torch.nonzero((px != x).flatten(1).any(1) & ~poisoned).flatten()
    assert len(cross) == 4  # cross_ratio 1
    pattern, mask = attack.nets()
    for row in cross.tolist():
        # Some other row's trigger, never its own.
        donors = [d for d in range(32) if d != row
                  and torch.allclose(px[row], stamp(x[row:row + 1], x[d:d + 1], pattern, mask)[0])]
        assert donors and not torch.allclose(px[row], attack.apply(x[row:row + 1])[0])


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("rate", [0.05, 0.1, 0.3])
def test_every_attack_poisons_exactly_the_chosen_share(attacks, name, rate):
    _, y = images()
    y = torch.arange(200) % 10
    idx = choose_poison_indices(y, target=0, rate=rate, generator=torch.Generator().manual_seed(1))
    assert len(idx) == round(rate * 200) and not (y[idx] == 0).any()
    # One pass of the training stream relabels exactly those samples; extra rows keep their labels.
    x = torch.randint(0, 256, (200, 1, 16, 16), dtype=torch.uint8)
    stream = BatchStream(x, y, 16, torch.device("cpu"), torch.Generator().manual_seed(0), shuffle=False,
                         attack=attacks[name], poisoned=idx, target=0)
    labels = torch.cat([yb for _, yb in stream])
    assert torch.equal(torch.nonzero(labels != y).flatten(), idx)


@pytest.mark.parametrize("name", NEW)
def test_artefact_round_trip_gives_identical_triggers(attacks, name, tmp_path):
    attack = attacks[name]
    save_artefact(attack, torch.tensor([2, 7]), {"target": 0}, tmp_path)
    loaded, idx, meta = load_artefact(tmp_path)
    assert type(loaded) is type(attack) and idx.tolist() == [2, 7] and meta["params"] == SETTINGS[name]
    x, y = torch.rand(16, 1, 16, 16), torch.arange(16) % 4 + 1
    assert torch.equal(loaded.apply(x), attack.apply(x))
    flags = torch.arange(16) % 5 == 0
    a = attack.poison_batch(x, y, flags, 0, torch.Generator().manual_seed(3))
    b = loaded.poison_batch(x, y, flags, 0, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("name", NEW)
def test_same_seed_same_trigger(attacks, name):
    again = build(name)
    assert again.tensors.keys() == attacks[name].tensors.keys()
    assert all(torch.equal(v, again.tensors[k]) for k, v in attacks[name].tensors.items())


@pytest.mark.parametrize("name", ["badnets", "blended", *NEW])
def test_every_attack_builds_for_32x32_colour_and_any_target_class(name):
    """GTSRB's shape (3x32x32, 43 classes) and a target other than 0: the poisoned rows, and only
    they, carry a visible trigger and the target label."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (96, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.arange(96) % 43
    target = 7
    context = {}
    if ATTACKS[name].needs_clean_model:
        torch.manual_seed(0)
        context["clean_model"] = models.compact_cnn(3, 43, [0.5] * 3, [0.3] * 3, width=4)
    params = SETTINGS.get(name, {"badnets": {"size": 3}, "blended": {"alpha": 0.2, "pattern_file": None}}.get(name))
    attack = ATTACKS[name].create(params, x, y, target, torch.Generator().manual_seed(1), **context)
    idx = choose_poison_indices(y, target=target, rate=0.1, generator=torch.Generator().manual_seed(2))
    assert not (y[idx] == target).any()
    flags = torch.zeros(96, dtype=torch.bool)
    flags[idx] = True
    xf = x.float() / 255.0
    px, py = attack.poison_batch(xf, y, flags, target, torch.Generator().manual_seed(3))
    assert (py[flags] == target).all()
    changed_label = py != y
    assert torch.equal(changed_label, flags)
    moved = (px - xf).abs().flatten(1).amax(1) > 1e-3
    assert moved[flags].all()
