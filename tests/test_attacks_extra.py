"""LF, WaNet and InputAware: trigger properties, training-time extras, artefact round trips (CPU)."""

import pytest
import torch

from sequela import models
from sequela.attacks.inputaware import stamp
from sequela.attacks.lf import lowpass_mask
from sequela.attacks.registry import ATTACKS, choose_poison_indices, load_artefact, save_artefact
from sequela.attacks.wanet import identity_grid
from sequela.engine.batches import BatchStream

# Small settings so every attack builds in well under a second.
SETTINGS = {
    "lf": {"eps": 0.1, "cutoff": 0.25, "steps": 15, "lr": 0.01, "batch_size": 16},
    "wanet": {"k": 4, "s": 0.5, "grid_rescale": 1, "cross_ratio": 2},
    "inputaware": {
        "width": 4,
        "mask_density": 0.032,
        "lambda_div": 1.0,
        "lambda_norm": 100.0,
        "mask_epochs": 2,
        "pattern_epochs": 1,
        "surrogate_width": 4,
        "surrogate_poison_rate": 0.1,
        "cross_ratio": 1,
        "lr": 0.01,
        "batch_size": 16,
    },
}
NEW = tuple(SETTINGS)


def images(n: int = 64, c: int = 1, size: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, size, size), generator=g, dtype=torch.uint8), torch.arange(n) % 4


def build(name: str, c: int = 1, size: int = 16, seed: int = 0, **overrides):
    x, y = images(c=c, size=size)
    context = {}
    if ATTACKS[name].needs_surrogate:  # LF works against any classifier; an untrained one will do
        torch.manual_seed(0)
        context["surrogate"] = models.small_cnn(c, 4, [0.5] * c, [0.3] * c, width=4)
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
    ATTACKS["lf"].create(SETTINGS["lf"], x, y, 0, torch.Generator().manual_seed(0), surrogate=model)
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
        assert not torch.allclose(mask(x[:1]), mask(x[i : i + 1]))
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
        donors = [
            d
            for d in range(32)
            if d != row and torch.allclose(px[row], stamp(x[row : row + 1], x[d : d + 1], pattern, mask)[0])
        ]
        assert donors and not torch.allclose(px[row], attack.apply(x[row : row + 1])[0])


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("rate", [0.05, 0.1, 0.3])
def test_every_attack_poisons_exactly_the_chosen_share(attacks, name, rate):
    _, y = images()
    y = torch.arange(200) % 10
    idx = choose_poison_indices(y, target=0, rate=rate, generator=torch.Generator().manual_seed(1))
    assert len(idx) == round(rate * 200) and not (y[idx] == 0).any()
    # One pass of the stream over the poisoned set as the defender holds it (`as_dataset`) relabels
    # exactly those samples; extra rows keep their labels.
    x = torch.randint(0, 256, (200, 1, 16, 16), dtype=torch.uint8)
    stream = BatchStream(
        x,
        y,
        16,
        torch.device("cpu"),
        torch.Generator().manual_seed(0),
        shuffle=False,
        attack=attacks[name].as_dataset(),
        poisoned=idx,
        target=0,
    )
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
    if ATTACKS[name].needs_surrogate:
        torch.manual_seed(0)
        context["surrogate"] = models.compact_cnn(3, 43, [0.5] * 3, [0.3] * 3, width=4)
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


def epochs_of(stream: BatchStream, epochs: int) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    return [list(stream) for _ in range(epochs)]


@pytest.mark.parametrize("name", ["wanet", "inputaware", "sbl"])
def test_per_batch_attacks_poison_a_fresh_share_at_the_head_of_every_batch(attacks, name):
    """WaNet, InputAware and SBL poison as their references train: in every batch the first
    rate x B rows (rounded stochastically to floor or ceil) carry the trigger and the target label,
    the next ones the cross rows under their own labels, other rows in every epoch."""
    attack = attacks[name] if name in attacks else ATTACKS["sbl"].create({"size": 3}, *images(), 0, torch.Generator())
    assert attack.schedule == "per_batch"
    n, batch, rate = 640, 32, 0.1
    x = torch.randint(0, 256, (n, 1, 16, 16), generator=torch.Generator().manual_seed(5), dtype=torch.uint8)
    y = torch.arange(n) % 4 + 1  # no target-class rows: a label 0 marks a triggered row
    stored = choose_poison_indices(y, 0, rate, torch.Generator().manual_seed(1))
    stream = BatchStream(
        x, y, batch, torch.device("cpu"), torch.Generator().manual_seed(0), attack=attack, poisoned=stored, target=0
    )
    triggered_all = attack.apply(x.float() / 255.0)
    cross_ratio = float(attack.params.get("cross_ratio", 0))
    seen, counts = [], []
    for epoch in epochs_of(stream, 3):
        rows = set()
        for xb, yb in epoch:
            k = int((yb == 0).sum())
            counts.append(k)
            assert k in (int(rate * len(yb)), int(rate * len(yb)) + 1)
            assert (yb[:k] == 0).all() and (yb[k:] != 0).all()  # the head of the batch
            for image in xb[:k]:  # each is the trigger on some training image
                hit = torch.nonzero((triggered_all - image).flatten(1).abs().amax(1) < 1e-6).flatten()
                assert len(hit) == 1
                rows.add(int(hit))
            changed = torch.tensor(
                [not bool(((x.float() / 255.0) - im).flatten(1).abs().amax(1).lt(1e-6).any()) for im in xb[k:]]
            )
            # Cross rows: right after the triggered ones, changed, labels kept (none for SBL).
            n_cross = int(changed.sum())
            assert not changed[n_cross:].any()
            if cross_ratio == 0:
                assert n_cross == 0
        seen.append(rows)
    assert abs(sum(counts) / (3 * n) - rate) < 0.02  # the rate on average
    assert seen[0] != seen[1] and seen[1] != seen[2]  # fresh rows each epoch
    assert not seen[0] <= set(stored.tolist())  # not the stored rows


@pytest.mark.parametrize("name", ["wanet", "inputaware"])
def test_cross_rows_keep_their_labels_and_number_as_the_references_say(attacks, name):
    attack = attacks[name]
    x, y = torch.rand(40, 1, 16, 16), torch.arange(40) % 4 + 1
    totals = {"bd": 0, "cross": 0}
    for seed in range(60):
        px, py = attack.poison_fresh(x, y, 0.1, 0, torch.Generator().manual_seed(seed))
        k = int((py == 0).sum())
        assert torch.equal(px[:k], attack.apply(x[:k])) and torch.equal(py[k:], y[k:])
        changed = (px[k:] != x[k:]).flatten(1).any(1)
        m = int(changed.sum())
        assert changed[:m].all() and not changed[m:].any()
        assert not torch.allclose(px[k : k + m], attack.apply(x[k : k + m]))  # not the plain trigger
        if name == "wanet":  # cross_ratio (2) x the triggered rows, as the official num_cross
            assert m == 2 * k
        totals["bd"] += k
        totals["cross"] += m
    # Both shares hold on average: rate, and rate x cross_ratio (4 and 8 or 4 rows of 40 per batch).
    assert abs(totals["bd"] / 60 - 4) < 0.5
    assert abs(totals["cross"] / 60 - 4 * float(SETTINGS[name]["cross_ratio"])) < 1.0


def test_the_defender_replays_a_per_batch_attack_on_its_stored_rows(attacks):
    attack = attacks["wanet"]
    replay = attack.as_dataset()
    assert replay.schedule == "fixed" and attack.schedule == "per_batch" and type(replay) is type(attack)
    assert torch.equal(replay.apply(torch.ones(2, 1, 16, 16)), attack.apply(torch.ones(2, 1, 16, 16)))
    fixed = ATTACKS["badnets"].create({"size": 3}, *images(), 0, torch.Generator())
    assert fixed.as_dataset() is fixed
    x, y = images(200)
    y = y + 1
    stored = choose_poison_indices(y, 0, 0.1, torch.Generator().manual_seed(1))
    stream = BatchStream(
        x,
        y,
        16,
        torch.device("cpu"),
        torch.Generator().manual_seed(0),
        shuffle=False,
        attack=replay,
        poisoned=stored,
        target=0,
    )
    for _ in range(2):
        labels = torch.cat([yb for _, yb in stream])
        assert torch.equal(torch.nonzero(labels == 0).flatten(), stored)


def reference_stream(x, y, batch, generator, augment, attack, poisoned, target):
    """The fixed schedule written out: shuffle, gather, stamp the stored rows, augment."""
    flags = torch.zeros(len(y), dtype=torch.bool)
    flags[poisoned] = True
    order = torch.randperm(len(y), generator=generator)
    for start in range(0, len(y), batch):
        idx = order[start : start + batch]
        xb, yb = attack.poison_batch(x[idx].float().div_(255.0), y[idx], flags[idx], target, generator)
        yield augment(xb, generator), yb


@pytest.mark.parametrize("name", ["badnets", "blended", "lf"])
def test_fixed_schedule_attacks_stream_exactly_as_before(attacks, name):
    """BadNets, Blended and LF keep the fixed rows: the engine's batches are bit for bit those of the
    fixed schedule written out, so their training is unchanged."""
    from sequela.engine.batches import Augment

    settings = {"badnets": {"size": 3}, "blended": {"alpha": 0.2, "pattern_file": None}}
    attack = attacks["lf"] if name == "lf" else ATTACKS[name].create(settings[name], *images(), 0, torch.Generator())
    assert attack.schedule == "fixed"
    x, y = images(150)
    stored = choose_poison_indices(y, 0, 0.1, torch.Generator().manual_seed(1))
    augment = Augment(crop_padding=1, flip=True)
    stream = BatchStream(
        x,
        y,
        16,
        torch.device("cpu"),
        torch.Generator().manual_seed(4),
        augment=augment,
        attack=attack,
        poisoned=stored,
        target=0,
    )
    mine = [b for _ in range(2) for b in stream]
    g = torch.Generator().manual_seed(4)
    theirs = [b for _ in range(2) for b in reference_stream(x, y, 16, g, augment, attack, stored, 0)]
    assert len(mine) == len(theirs)
    for (xa, ya), (xb, yb) in zip(mine, theirs):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_badnets_training_is_bit_identical_to_the_fixed_schedule():
    """A seeded BadNets run through the engine's stream gives, bit for bit, the weights of the same run
    fed the fixed schedule written out (`reference_stream`), on whatever CPU it runs."""
    from conftest import make_blobs
    from sequela.engine.batches import Augment
    from sequela.engine.loop import fit
    from sequela.engine.optimizers import sgd
    from sequela.engine.schedules import cosine

    train = make_blobs(320, seed=0)
    g = torch.Generator().manual_seed(0)
    attack = ATTACKS["badnets"].create({"size": 3}, train.x, train.y, 0, g)
    poisoned = choose_poison_indices(train.y, 0, 0.1, g)
    cpu, augment, epochs = torch.device("cpu"), Augment(1, False), 3

    class Written:
        """The reference batches, one shuffle per epoch from the generator, as the engine draws them."""

        device = cpu

        def __init__(self, generator):
            self.generator = generator

        def __len__(self):
            return -(-len(train.y) // 16)

        def __iter__(self):
            return reference_stream(train.x, train.y, 16, self.generator, augment, attack, poisoned, 0)

    trained = []
    for stream in (
        BatchStream(
            train.x,
            train.y,
            16,
            cpu,
            torch.Generator().manual_seed(5),
            augment=augment,
            attack=attack,
            poisoned=poisoned,
            target=0,
        ),
        Written(torch.Generator().manual_seed(5)),
    ):
        torch.manual_seed(0)
        model = models.build("small_cnn", 1, 4, [0.2], [0.25], width=8)
        fit(model, stream, sgd(model, 0.05), cosine(0.05, epochs * len(stream)), epochs)
        trained.append(model.state_dict())
    assert all(torch.equal(v, trained[1][k]) for k, v in trained[0].items())
    torch.manual_seed(0)
    untrained = models.build("small_cnn", 1, 4, [0.2], [0.25], width=8)
    assert not torch.equal(trained[0]["fc.weight"], untrained.fc.weight)  # it trained
