"""Sequela measures: membership inference, re-injection, PGD robustness (CPU, small synthetic data)."""

import copy

import numpy as np
import pytest
import torch
import yaml
from sklearn.metrics import roc_auc_score, roc_curve

from conftest import make_blobs
from sequela import models
from sequela.attacks.registry import ATTACKS
from sequela.datasets.splits import Split
from sequela.engine.batches import Augment, BatchStream
from sequela.engine.device import seed_everything
from sequela.engine.loop import fit
from sequela.engine.optimizers import sgd
from sequela.engine.schedules import cosine
from sequela.measures.membership import SCORES, member_groups, metric_attacks, scores, stable_log_probs
from sequela.measures.reinject import Reinjection, reinjection_set, repeated
from sequela.measures.retune import Retuning, retuning_set
from sequela.measures.robustness import pgd, pgd_accuracy
from sequela.measures.roc import auc, tpr_at_fpr
from sequela.measures.shadow import ShadowAttack, train_shadow
from sequela.metrics import backdoor_metrics, clean_accuracy
from sequela.pipeline.errors import ConfigError
from sequela.training.recipe import Recipe
from sequela.validate import validate

# A recipe small enough to memorise 48 images in ~1 s on one CPU thread.
TINY = Recipe(model="small_cnn", width=8, epochs=60, batch_size=16, lr=0.05)


def random_labels(split: Split, seed: int) -> Split:
    """Blob images with shuffled labels: nothing to generalise, so a model can only memorise them."""
    g = torch.Generator().manual_seed(seed)
    return Split(split.x, split.y[torch.randperm(len(split), generator=g)])


def tiny_spec(num_classes: int = 4) -> dict:
    return {
        "arch": "small_cnn",
        "in_channels": 1,
        "num_classes": num_classes,
        "mean": [0.2],
        "std": [0.25],
        "width": 8,
        "input_shape": [1, 8, 8],
    }


@pytest.fixture(scope="module")
def memorised():
    """An overfitted model: trained long on 48 randomly labelled images (its members); 48 other
    randomly labelled images are its non-members. A disjoint 48 train the shadow model (as many as
    the target's) and 48 more are the shadow's non-members."""
    seed_everything(0)
    pool = random_labels(make_blobs(240, seed=3), seed=4)
    members, nonmembers = pool.subset(torch.arange(48)), pool.subset(torch.arange(48, 96))
    shadow, shadow_out = pool.subset(torch.arange(96, 144)), pool.subset(torch.arange(144, 192))
    model = models.build_from_spec(tiny_spec())
    g = torch.Generator().manual_seed(0)
    stream = BatchStream(members.x, members.y, 16, torch.device("cpu"), g)
    fit(model, stream, sgd(model, TINY.lr), cosine(TINY.lr, TINY.epochs * len(stream)), TINY.epochs)
    return {"model": model, "members": members, "nonmembers": nonmembers, "shadow": shadow, "shadow_out": shadow_out}


@pytest.fixture(scope="module")
def clean_model():
    """A small CNN trained on clean blobs, no poison."""
    seed_everything(0)
    train, test = make_blobs(400, seed=0), make_blobs(200, seed=1)
    model = models.build_from_spec(tiny_spec())
    g = torch.Generator().manual_seed(0)
    stream = BatchStream(train.x, train.y, 32, torch.device("cpu"), g)
    fit(model, stream, sgd(model, 0.05), cosine(0.05, 8 * len(stream)), 8)
    return {"model": model, "train": train, "test": test}


# --- ROC summaries --------------------------------------------------------------------------------


def test_auc_and_tpr_match_scikit_learn_with_ties():
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 20, 300).astype(float) + 2, rng.integers(0, 20, 500).astype(float)
    y = np.r_[np.ones(300), np.zeros(500)]
    s = np.r_[pos, neg]
    assert auc(pos, neg) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, s)
    for max_fpr in (0.0, 0.01, 0.1, 0.5):
        assert tpr_at_fpr(pos, neg, max_fpr) == pytest.approx(tpr[fpr <= max_fpr].max())
    assert auc([1.0, 2.0], [0.0]) == 1.0 and auc([0.0], [1.0, 2.0]) == 0.0 and auc([1.0], [1.0]) == 0.5


# --- metric membership attacks --------------------------------------------------------------------


def test_stable_log_probs_agree_with_log_softmax_and_do_not_saturate():
    logits = torch.randn(50, 7) * 3
    logp, log1m = stable_log_probs(logits)
    ref = torch.log_softmax(logits.double(), 1)
    assert torch.allclose(logp, ref, atol=1e-12)
    assert torch.allclose(log1m, torch.log1p(-ref.exp()), atol=1e-9)
    # Confidently memorised samples: plain log_softmax rounds log p to 0 for both; we keep them apart.
    extreme = torch.tensor([[60.0, 0.0, 0.0], [80.0, 0.0, 0.0]])
    s = scores(extreme, torch.tensor([0, 0]))
    for name in SCORES:
        assert torch.isfinite(s[name]).all() and s[name][1] > s[name][0], name


def test_metric_attacks_detect_memorised_members(memorised):
    out = metric_attacks(memorised["model"], memorised["members"], memorised["nonmembers"])
    for name in SCORES:
        assert out[f"{name}_auc"] > 0.8, (name, out)
    assert out["loss_tpr"] > 0.2


def test_metric_attacks_are_near_chance_members_against_members(memorised):
    members = memorised["members"]
    half_a, half_b = members.subset(torch.arange(0, 48, 2)), members.subset(torch.arange(1, 48, 2))
    out = metric_attacks(memorised["model"], half_a, half_b)
    for name in SCORES:
        assert abs(out[f"{name}_auc"] - 0.5) < 0.2, (name, out)


def test_member_groups_skip_poisoned_and_removed_rows_and_split_by_what_the_defender_saw():
    poisoned, defender = torch.arange(0, 100, 10), torch.arange(0, 50)
    groups = member_groups(100, 20, seed=7, poisoned=poisoned, defender=defender)
    assert torch.equal(groups["all"], member_groups(100, 20, 7, poisoned, defender)["all"])  # seeded
    assert set(groups) == {"all", "seen", "unseen"} and all(len(g) == 20 for g in groups.values())
    assert not set(groups["all"].tolist()) & set(poisoned.tolist())
    assert set(groups["seen"].tolist()) <= set(defender.tolist())
    assert not set(groups["unseen"].tolist()) & set(defender.tolist())
    # Rows a defense removed before retraining are not members of its model; the rest stay the same.
    removed = groups["all"][:5]
    after = member_groups(100, 20, 7, poisoned, defender, removed=removed)
    assert not set(after["all"].tolist()) & set(removed.tolist())
    assert set(groups["all"].tolist()) - set(removed.tolist()) <= set(after["all"].tolist())
    # The defender's own draw (same seed) must not decide the "all" group: it mixes seen and unseen rows.
    from sequela.datasets.splits import clean_subset

    half = clean_subset(1000, 0.5, seed=7)
    mixed = member_groups(1000, 200, 7, torch.tensor([], dtype=torch.long), half)["all"]
    inside = torch.isin(mixed, half).float().mean().item()
    assert 0.3 < inside < 0.7, inside
    # A defender that holds every row leaves no "unseen" group to report.
    assert set(member_groups(100, 20, 7, poisoned, torch.arange(100))) == {"all"}


# --- shadow-model attack --------------------------------------------------------------------------


def test_shadow_attack_beats_chance_on_the_memorising_model(memorised):
    run = train_shadow(
        memorised["shadow"], memorised["shadow_out"], tiny_spec(), TINY, torch.device("cpu"), seed=1, curve_n=1000
    )
    assert run.curve[-1]["train_acc"] > run.curve[-1]["test_acc"] + 0.3  # the shadow overfits like the target
    attack = ShadowAttack(top_k=3, hidden=32, epochs=300, lr=0.1, seed=0)
    mlp = attack.fit(run.model, memorised["shadow"], memorised["shadow_out"])
    out = attack.evaluate(mlp, memorised["model"], memorised["members"], memorised["nonmembers"])
    assert out["auc"] > 0.7 and out["acc"] > 0.55, out


# --- re-injection ---------------------------------------------------------------------------------


def test_reinjection_set_poisons_k_non_target_images_apart_from_the_clean_ones():
    train = make_blobs(100)
    data, poisoned = reinjection_set(train, 30, 8, target=0, seed=0)
    assert len(data) == 38 and poisoned.tolist() == list(range(30, 38))
    assert bool((data.y[poisoned] != 0).all())
    with pytest.raises(ValueError):
        reinjection_set(train, 95, 10, target=0, seed=0)


def test_reinjection_plants_the_backdoor_in_a_clean_model(clean_model):
    model, test = clean_model["model"], clean_model["test"]
    attack = ATTACKS["badnets"].create({"size": 3}, test.x, test.y, 0, torch.Generator())
    weights = copy.deepcopy(model.state_dict())
    out = Reinjection(n_clean=100, k=20, epochs=4, lr=0.05, batch_size=16, seed=0).run(
        model, clean_model["train"], test, attack, target=0
    )
    assert len(out["curve"]) == 4 and out["asr"] == out["curve"][-1]
    assert out["asr_before"] < 0.3 and out["asr"] > out["asr_before"] + 0.4, out
    # The measured model itself is untouched.
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())
    assert backdoor_metrics(model, test, attack, 0)["asr"] == out["asr_before"]


def test_repeated_reinjection_averages_independent_draws(clean_model):
    model, test = clean_model["model"], clean_model["test"]
    attack = ATTACKS["badnets"].create({"size": 3}, test.x, test.y, 0, torch.Generator())
    base = Reinjection(n_clean=60, k=6, epochs=2, lr=0.05, batch_size=16, seed=3)
    out = repeated(base, 3, model, clean_model["train"], test, attack, target=0)
    single = [
        base.__class__(**{**base.__dict__, "seed": 3000 + d}).run(model, clean_model["train"], test, attack, 0)
        for d in range(3)
    ]
    assert out["mean_asr"] == pytest.approx(sum(r["mean_asr"] for r in single) / 3)
    assert out["curve"] == pytest.approx([sum(r["curve"][e] for r in single) / 3 for e in range(2)])
    assert out["sd_draws"] > 0  # the draws differ
    assert out["asr_before"] == single[0]["asr_before"]  # the first draw's, measured once


# --- the retuning attack ---------------------------------------------------------------------------


def test_retuning_set_swaps_the_first_k_clean_rows_for_stamped_poisons():
    train, clean = make_blobs(100, seed=1), make_blobs(40, seed=2)
    attack = ATTACKS["badnets"].create({"size": 3}, train.x, train.y, 0, torch.Generator())
    poisoned = torch.nonzero(train.y != 0).flatten()[:10]
    data, plain = retuning_set(clean, train, poisoned, 5, attack, 0, torch.device("cpu"))
    assert len(data) == len(clean) and plain.tolist() == [True] * 5 + [False] * 35
    assert (
        bool((data.y[:5] == 0).all()) and torch.equal(data.y[5:], clean.y[5:]) and torch.equal(data.x[5:], clean.x[5:])
    )
    stamped = attack.apply(train.x[poisoned[:5]].float() / 255).mul(255).round().to(torch.uint8)
    assert torch.equal(data.x[:5], stamped)
    with pytest.raises(ValueError):
        retuning_set(clean, train, poisoned, 11, attack, 0, torch.device("cpu"))


def test_plain_rows_are_never_augmented():
    x = torch.randint(0, 255, (8, 1, 8, 8), dtype=torch.uint8)
    plain = torch.tensor([True, False] * 4)
    stream = BatchStream(
        x,
        torch.arange(8),
        8,
        torch.device("cpu"),
        torch.Generator().manual_seed(0),
        shuffle=False,
        augment=Augment(crop_padding=3),
        plain=plain,
    )
    ((xb, _),) = list(stream)
    assert torch.equal(xb[plain], x[plain].float() / 255)
    assert not torch.equal(xb[~plain], x[~plain].float() / 255)  # the others are cropped


def test_retuning_plants_the_backdoor_in_a_clean_model_and_leaves_it_untouched(clean_model):
    model, test, train = clean_model["model"], clean_model["test"], clean_model["train"]
    attack = ATTACKS["badnets"].create({"size": 3}, test.x, test.y, 0, torch.Generator())
    poisoned = torch.nonzero(train.y != 0).flatten()
    weights = copy.deepcopy(model.state_dict())
    before = backdoor_metrics(model, test, attack, 0)["asr"]
    data, plain = retuning_set(train.subset(torch.arange(60)), train, poisoned, 20, attack, 0, torch.device("cpu"))
    out = Retuning(k=20, epochs=4, lr=0.05, batch_size=16).run(model, data, plain, test, attack, 0)
    assert len(out["retune_curve"]) == 4 and 0.0 <= out["p_ca"] <= 1.0
    assert before < 0.3 and out["p_asr"] > before + 0.4, (before, out)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())
    # No poisons (k rows left clean): nothing to relearn.
    clean_only, none = train.subset(torch.arange(60)), torch.zeros(60, dtype=torch.bool)
    assert Retuning(k=20, epochs=4, lr=0.05, batch_size=16).run(model, clean_only, none, test, attack, 0)["p_asr"] < 0.3


def test_the_retuning_attack_keeps_min_et_al_s_poison_share_and_batch():
    from sequela.measures.retune import poison_count

    # Their 5 of 1,000 rows; digits' 337-row defender split gets 2, a 980-row GTSRB share 5, never 0.
    assert [poison_count(n, 0.005) for n in (1000, 337, 980, 20)] == [5, 2, 5, 1]
    settings = {
        "share": 0.005,
        "batch_size": 128,
        "epochs": 5,
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "eval_n": 100,
    }
    r = Retuning.from_settings(settings, 337, recipe_batch=16, seed=0)
    assert (r.k, r.batch_size) == (2, 128)
    assert Retuning.from_settings({**settings, "batch_size": None}, 337, 16, 0).batch_size == 16


# --- PGD ------------------------------------------------------------------------------------------


def test_pgd_with_eps_zero_keeps_the_clean_accuracy(clean_model):
    model, test = clean_model["model"], clean_model["test"]
    assert pgd_accuracy(model, test, eps=0.0, step=0.01, steps=5, n=len(test), seed=0) == clean_accuracy(model, test)


def test_pgd_accuracy_never_rises_with_eps(clean_model):
    model, test = clean_model["model"], clean_model["test"]
    accs = [pgd_accuracy(model, test, eps, eps / 4, 10, n=100, seed=0) for eps in (0.0, 0.05, 0.1, 0.2, 0.4)]
    assert all(a >= b for a, b in zip(accs, accs[1:])), accs
    assert accs[-1] < accs[0]


def test_pgd_figures_average_the_accuracy_over_every_budget(clean_model):
    from sequela.measures.robustness import pgd_figures

    model, test = clean_model["model"], clean_model["test"]
    settings = {"eps": [0.0, 0.1, 0.4], "step_fraction": 0.25, "steps": 5, "n": 50, "random_start": True}
    figures = pgd_figures(model, test, settings, seed=0)
    each = [pgd_accuracy(model, test, e, e / 4, 5, n=50, seed=0) for e in settings["eps"]]
    assert list(figures["pgd_acc_by_eps"].values()) == each
    assert figures["pgd_acc"] == pytest.approx(sum(each) / 3)


def test_pgd_stays_in_the_eps_ball_and_the_pixel_range(clean_model):
    model = clean_model["model"]
    x = clean_model["test"].x[:16].float() / 255
    y = clean_model["test"].y[:16]
    model.train()
    state = copy.deepcopy(model.state_dict())
    adv = pgd(model, x, y, eps=0.1, step=0.05, steps=5, random_start=True, generator=torch.Generator().manual_seed(0))
    assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    # Neither the weights nor BatchNorm's running statistics move, and the mode is restored.
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items()) and model.training


# --- params.yaml ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value, allowed",
    [
        ("sequela.membership.top_k", 0, "positive integer"),
        ("sequela.reinject.k", 2.5, "positive integer"),
        ("sequela.reinject.lr", -0.1, "(0.0, inf)"),
        ("sequela.retune.share", 0, "(0.0, 1.0)"),
        ("sequela.retune.batch_size", 0, "integer"),
        ("sequela.retune.weight_decay", -1.0, "[0.0, inf)"),
        ("sequela.pgd.eps", 1.5, "a non-empty list"),
        ("sequela.pgd.eps", [0.1, 1.5], "a non-empty list"),
        ("sequela.pgd.random_start", "yes", "true or false"),
    ],
)
def test_bad_sequela_values_name_key_value_and_what_is_allowed(key, value, allowed):
    from pathlib import Path

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    node = params
    *parents, last = key.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    with pytest.raises(ConfigError) as err:
        validate(params)
    assert key in str(err.value) and repr(value) in str(err.value) and allowed in str(err.value)


def test_a_seeded_sample_of_a_split_is_reproducible_and_keeps_labels_with_images():
    from sequela.datasets.splits import Split

    test = Split(torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1), torch.arange(50) % 10)
    assert test.sample(50, 0) is test  # small sets are measured whole
    a, b, c = test.sample(20, 0), test.sample(20, 0), test.sample(20, 1)
    assert len(a) == 20 and len(set(a.x.flatten().tolist())) == 20  # distinct rows
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    assert torch.equal(test.y[a.x.flatten().long()], a.y)  # labels stay with their images
