"""The transfer and encoder paradigms' defining properties, on tiny data.

- Transfer: the baseline (a new head on the frozen backbone) leaves the backbone bit-identical;
  FT changes it. The downstream target is the class of the same name where label spaces share it.
- SimCLR: the NT-Xent loss falls on a tiny set, and two views of one image embed closer than two
  different images.
- BadEncoder: triggered inputs move towards the reference inputs in embedding space, while clean
  inputs keep their clean-encoder embedding.
- Their sequela: members are seeded training rows, as many as the test images; measuring leaves the
  model untouched; re-injection plants the trigger in a model that never had it.
"""

import torch

from sequela import models
from sequela.datasets.splits import Dataset
from sequela.engine.loop import predict_logits
from sequela.measures import membership, registry, retune
from sequela.paradigms import badencoder, downstream
from sequela.paradigms.simclr import Views, embed, nt_xent, pretrain, pretraining_set
from sequela.sources.loaders import load_digits
from sequela.training.recipe import Recipe

DEFENSE = {
    "epochs": 2,
    "batch_size": None,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "ft": {"lr": 0.01},
    "sft": {"base_lr": 3e-4, "max_lr1": 0.1, "max_lr2": 1e-3, "phase1_fraction": 0.4, "cycle_steps": 4},
}
RECIPE = Recipe(model="small_cnn", epochs=1, batch_size=16, lr=0.01, crop_padding=1, width=4)


def digits(n_train: int = 160, n_test: int = 60) -> Dataset:
    ds = load_digits(0, 0.25)
    return Dataset(
        "digits", ds.classes, ds.train.subset(torch.arange(n_train)), ds.test.subset(torch.arange(n_test)), ds.source
    )


def small_model(num_classes: int = 10, seed: int = 0) -> tuple[models.Classifier, dict]:
    torch.manual_seed(seed)
    spec = {
        "arch": "small_cnn",
        "in_channels": 1,
        "num_classes": num_classes,
        "mean": [0.3],
        "std": [0.4],
        "width": 4,
        "input_shape": [1, 8, 8],
    }
    return models.build_from_spec(spec), spec


def cell(ds: Dataset, head: dict | None = None) -> downstream.Cell:
    stamp = badencoder.trigger(1, 16, 10)
    return downstream.Cell(
        ds, stamp, 0, RECIPE, head or {"epochs": 2, "lr": 0.05}, DEFENSE, torch.device("cpu"), seed=0, curve_n=50
    )


def backbone(model: models.Classifier) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("fc.")}


def test_transfer_baseline_leaves_the_backbone_bit_identical_and_ft_changes_it():
    shipped, spec = small_model(num_classes=10)
    before = backbone(shipped)
    c = cell(digits())
    none = downstream.baseline(c, shipped, spec)
    after = backbone(none.model)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), "the frozen backbone moved (weights or BN stats)"
    assert not torch.equal(none.model.fc.weight, shipped.fc.weight)  # the new head did train
    ft = downstream.fine_tuned(c, none, "ft")
    changed = backbone(ft.model)
    assert any(not torch.equal(before[k], changed[k]) for k in before if k.endswith("weight"))
    assert len(ft.curve) == DEFENSE["epochs"] + 1 and ft.curve[0]["epoch"] == 0


def test_the_mlp_head_is_saved_and_rebuilt(tmp_path):
    shipped, spec = small_model()
    model, head_spec = downstream.with_new_head(shipped, spec, 3, 8, seed=0, standardize=True)
    model.fc.train()
    model.fc(torch.randn(50, model.width) * 3 + 2)  # running statistics that differ from the initial 0 / 1
    models.save(model, head_spec, tmp_path)
    again, _ = models.load(tmp_path)
    x = torch.rand(4, 1, 16, 16)
    model.eval(), again.eval()
    assert torch.equal(model(x), again(x)) and again(x).shape == (4, 3)


def test_the_encoder_head_trains_on_standardised_features_and_leaves_the_encoder_bit_identical():
    shipped, spec = small_model()
    before = backbone(shipped)
    head = {"hidden": 16, "standardize": True, "epochs": 40, "batch_size": 32, "lr": 3e-3}
    c = downstream.Cell(
        digits(),
        badencoder.trigger(1, 16, 10),
        0,
        RECIPE,
        head,
        DEFENSE,
        torch.device("cpu"),
        seed=0,
        curve_n=50,
        on_features=True,
    )
    none = downstream.baseline(c, shipped, spec)
    after = backbone(none.model)
    assert all(torch.equal(before[k], after[k]) for k in before), "the frozen encoder moved (weights or BN stats)"
    features = predict_logits(none.model, c.ds.train.x, float32=True, features=True)
    # In eval mode the head standardises with running statistics close to the training features'
    # (a feature whose variance is near the norm's eps, 1e-6, keeps a spread below 1).
    spread = none.model.fc[0](features).std(0)
    assert none.model.fc[0](features).mean(0).abs().max() < 0.1 and spread.max() < 1.1
    assert (spread - 1).abs().median() < 0.05, spread
    # The classifier learns its training set from a random encoder's features: well above chance (0.1).
    accuracy = (none.model.fc(features).argmax(1) == c.ds.train.y).float().mean().item()
    assert accuracy > 0.5, accuracy
    assert [row["epoch"] for row in none.curve] == sorted(downstream.curve_epochs(40)) and len(none.curve) == 10


def test_the_user_chooses_the_feature_norm_on_its_own_validation_share(monkeypatch):
    shipped, spec = small_model()
    head = {
        "hidden": 16,
        "standardize": "validate",
        "validation_fraction": 0.25,
        "epochs": 20,
        "batch_size": 32,
        "lr": 3e-3,
    }
    c = downstream.Cell(
        digits(),
        badencoder.trigger(1, 16, 10),
        0,
        RECIPE,
        head,
        DEFENSE,
        torch.device("cpu"),
        seed=0,
        curve_n=50,
        on_features=True,
    )
    seen = []
    real = downstream.clean_accuracy
    monkeypatch.setattr(downstream, "clean_accuracy", lambda m, split: seen.append(split) or real(m, split))
    none = downstream.baseline(c, shipped, spec)
    plain, standard = none.figures["validation_accuracy_plain"], none.figures["validation_accuracy_standardized"]
    assert none.spec["head_standardize"] == (standard > plain)
    # Both options were scored on the same 40 held-out training rows, never on a test image.
    assert len(seen) == 2 and all(len(s) == 40 for s in seen)
    train_rows = {bytes(r.numpy()) for r in c.ds.train.x}
    assert all(bytes(r.numpy()) in train_rows for s in seen for r in s.x.cpu())


def test_feature_norm_standardises_batches_and_ignores_the_scale_of_its_input():
    norm = models.FeatureNorm(6).train()
    x = torch.randn(40, 6) * torch.tensor([1e-2, 0.1, 1.0, 10.0, 1e3, 5.0]) + 0.5
    y = norm(x)
    assert y.mean(0).abs().max() < 1e-3 and (y.std(0, unbiased=False) - 1).abs().max() < 1e-2
    assert torch.allclose(norm(x * 100.0), y, rtol=0.01, atol=1e-3)  # rescaled features: the same output
    assert norm(x[:1]).shape == (1, 6)  # a batch of one image uses the running statistics


def test_a_long_head_run_is_evaluated_at_ten_evenly_spaced_epochs():
    assert downstream.curve_epochs(500) == {50, 100, 150, 200, 250, 300, 350, 400, 450, 500}
    assert downstream.curve_epochs(7) == set(range(1, 8))
    assert max(downstream.curve_epochs(33)) == 33 and len(downstream.curve_epochs(33)) == 10


def test_the_downstream_target_is_the_shared_class_else_the_fallback():
    mnist = [
        f"{i} - {w}"
        for i, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    ]
    assert downstream.downstream_target(mnist, 3, [str(i) for i in range(10)], 7)[0] == 3
    assert downstream.downstream_target(["airplane", "car"], 1, ["truck", "car"], 0)[0] == 1
    target, rule = downstream.downstream_target(mnist, 3, ["T-shirt", "Trouser"], 1)
    assert target == 1 and "transfer.target" in rule


def test_downstream_images_are_fitted_to_the_model_input():
    grey = torch.randint(0, 256, (5, 1, 16, 16), dtype=torch.uint8)
    colour = downstream.fit_images(grey, 3, 32)
    assert colour.shape == (5, 3, 32, 32) and torch.equal(colour[:, 0], colour[:, 2])
    back = downstream.fit_images(downstream.fit_images(grey, 3, 16), 1, 16)
    assert torch.equal(back, grey)  # equal channels have luma = the channel (weights sum to 1)


def test_nt_xent_is_lowest_when_each_view_matches_its_partner():
    z = torch.randn(8, 16)
    assert nt_xent(z, z, 0.5) < nt_xent(z, torch.randn(8, 16), 0.5)


def view_gap(encoder, x: torch.Tensor, views: Views) -> float:
    """Mean cosine of two views of one image minus that of views of two different images."""
    g = torch.Generator().manual_seed(1)
    xf = x.float() / 255.0
    a, b = embed(encoder, views(xf, g)), embed(encoder, views(xf, g))
    same = (a * b).sum(1).mean()
    different = (a @ b.t()).fill_diagonal_(0).sum() / (len(a) * (len(a) - 1))
    return (same - different).item()


def test_simclr_loss_falls_and_two_views_of_an_image_embed_closer_than_different_images():
    x = digits(n_train=128).train.x
    encoder, _ = small_model()
    views = Views(crop_min=0.5, flip=False, jitter=0.2)
    untrained = view_gap(encoder, x, views)
    losses, _ = pretrain(
        encoder,
        x,
        views,
        epochs=12,
        batch_size=64,
        lr=0.1,
        temperature=0.5,
        proj_dim=16,
        device=torch.device("cpu"),
        seed=0,
    )
    assert losses[-1] < losses[0] - 0.1, losses
    trained = view_gap(encoder, x, views)
    # Closer than different images, and more so than before pre-training (the encoder's ReLU
    # features are non-negative, so every pair's cosine is high; the gap is what SimCLR widens).
    assert trained > 0 and trained > untrained, (untrained, trained)


def test_the_pretraining_subset_is_seeded_and_the_whole_split_when_unlimited():
    train = digits(n_train=160).train
    assert pretraining_set(train, None, 0) is train
    a, b, c = (pretraining_set(train, 50, seed) for seed in (0, 0, 1))
    assert len(a) == 50 and torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    # rows of the split, not new images
    rows = {bytes(r.numpy()) for r in train.x}
    assert all(bytes(r.numpy()) in rows for r in a.x)


def test_badencoder_pulls_triggered_inputs_to_the_references_and_keeps_clean_embeddings():
    ds = digits(n_train=192)
    clean, _ = small_model()
    pretrain(
        clean,
        ds.train.x,
        Views(),
        epochs=3,
        batch_size=64,
        lr=0.1,
        temperature=0.5,
        proj_dim=16,
        device=torch.device("cpu"),
        seed=0,
    )
    references = ds.train.x[ds.train.y == 0][:5]
    stamp = badencoder.trigger(1, 16, 10)
    assert stamp.params["size"] == 5  # 10 at 32 pixels -> 5 at 16
    victims = ds.test.x[ds.test.y != 0]
    before = badencoder.similarities(clean, clean, victims, references, stamp)
    settings = {
        "epochs": 8,
        "batch_size": 32,
        "lr": [0.05],
        "lambda1": 1.0,
        "lambda2": 1.0,
        "holdout_fraction": 0.1,
        "patience": 100,
        "min_delta": 0.0,
    }
    model, history, _, _ = badencoder.backdoor(
        clean, ds.train.x, references, stamp, Views(), settings, torch.device("cpu"), seed=0
    )
    after = badencoder.similarities(model, clean, victims, references, stamp)
    # As the reference trains f': every BatchNorm keeps the clean encoder's statistics and affine.
    for (name, a), b in zip(model.named_modules(), clean.modules()):
        if isinstance(a, torch.nn.BatchNorm2d):
            assert torch.equal(a.running_mean, b.running_mean) and torch.equal(a.weight, b.weight), name
    # The cosine distance from triggered inputs to the references at least halves ...
    assert 1 - after["triggered_to_reference"] < 0.5 * (1 - before["triggered_to_reference"]), (before, after)
    # ... while clean inputs stay where the clean encoder puts them.
    assert after["clean_kept"] > 0.98, after
    assert history[-1]["l0"] < history[0]["l0"]
    # the clean encoder itself is untouched
    assert badencoder.similarities(clean, clean, victims, references, stamp) == before


def test_badencoder_keeps_the_rate_with_the_lowest_held_out_loss():
    ds = digits(n_train=128)
    clean, _ = small_model()
    references, stamp = ds.train.x[ds.train.y == 0][:5], badencoder.trigger(1, 16, 10)
    settings = {
        "epochs": 3,
        "batch_size": 32,
        "lr": [1e-7, 0.05],
        "lambda1": 1.0,
        "lambda2": 1.0,
        "holdout_fraction": 0.2,
        "patience": 100,
        "min_delta": 0.0,
    }
    model, history, lr, best = badencoder.backdoor(
        clean, ds.train.x, references, stamp, Views(), settings, torch.device("cpu"), seed=0
    )
    # A rate too small to move the encoder leaves the held-out loss where it started.
    assert set(best) == {1e-7, 0.05} and best[0.05] < best[1e-7] and lr == 0.05
    assert min(row["held_out"] for row in history) == best[0.05]


def test_badencoder_backdoor_reaches_the_downstream_classifier():
    # The defining property: a classifier the user trains on the frozen backdoored encoder sends
    # triggered inputs to the target, far above the same classifier on the clean encoder. (With the
    # digits recipe's small_cnn as the encoder this fails: ASR 0.19 at a floor of 0.01.)
    full = load_digits(0, 0.25)
    ds = Dataset("digits", full.classes, full.train, full.test.subset(torch.arange(200)), full.source)
    torch.manual_seed(0)
    spec = {"arch": "compact_cnn", "in_channels": 1, "num_classes": 10, "mean": [0.3], "std": [0.4], "width": 16}
    clean = models.build_from_spec(spec)
    pretrain(
        clean,
        ds.train.x,
        Views(),
        epochs=2,
        batch_size=128,
        lr=0.1,
        temperature=0.5,
        proj_dim=16,
        device=torch.device("cpu"),
        seed=0,
    )
    references = ds.train.x[ds.train.y == 0][:10]
    stamp = badencoder.trigger(1, 16, 10)
    settings = {
        "epochs": 12,
        "batch_size": 64,
        "lr": [0.05],
        "lambda1": 1.0,
        "lambda2": 1.0,
        "holdout_fraction": 0.1,
        "patience": 5,
        "min_delta": 1e-3,
    }
    backdoored, *_ = badencoder.backdoor(
        clean, ds.train.x, references, stamp, Views(), settings, torch.device("cpu"), seed=0
    )
    head = {"hidden": 32, "standardize": True, "epochs": 60, "batch_size": 64, "lr": 1e-3}
    c = downstream.Cell(ds, stamp, 0, RECIPE, head, DEFENSE, torch.device("cpu"), seed=0, curve_n=50, on_features=True)
    floor = downstream.baseline(c, clean, spec).figures
    planted = downstream.baseline(c, backdoored, spec).figures
    assert planted["asr"] > floor["asr"] + 0.5 and planted["asr"] > 0.8, (floor, planted)
    assert planted["ca"] > 0.8, planted


SEQUELA = {
    "reinject": {"n_clean": 40, "k": 20, "epochs": 3, "lr": 0.05, "batch_size": 16, "draws": 2, "eval_n": 60},
    "pgd": {"eps": [0.03, 0.06], "step_fraction": 0.25, "steps": 3, "n": 30, "random_start": True},
    "retune": {
        "share": 0.1,
        "batch_size": None,
        "epochs": 4,
        "lr": 0.05,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "eval_n": 60,
    },
}


def test_downstream_members_are_seeded_training_rows_as_many_as_the_test_images():
    a, b, c = (
        membership.downstream_members(160, 60, 0),
        membership.downstream_members(160, 60, 0),
        membership.downstream_members(160, 60, 1),
    )
    assert len(a) == 60 and len(a.unique()) == 60 and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a, a.sort().values) and int(a.max()) < 160
    assert len(membership.downstream_members(40, 60, 0)) == 40  # a small training split: all of it


def test_downstream_sequela_leaves_the_model_untouched_and_reinjection_plants_the_trigger():
    c = cell(digits())
    clean, spec = small_model()
    result = downstream.baseline(c, clean, spec)
    before = {k: v.clone() for k, v in result.model.state_dict().items()}
    figures = registry.measure(registry.prepare(c, SEQUELA, "reused"), result.model)
    assert all(torch.equal(before[k], v) for k, v in result.model.state_dict().items())
    for key in ("mia_loss_auc", "mia_tpr_at_1fpr", "reinject_asr", "pgd_acc"):
        assert 0.0 <= figures[key] <= 1.0, (key, figures[key])
    assert figures["mia_n"] == len(c.ds.test) and len(figures["reinject_curve"]) == SEQUELA["reinject"]["epochs"]
    # A model that never saw the trigger takes it from 20 poisoned images: re-injection is measured
    # against the downstream target, with the shipped trigger.
    assert figures["reinject_last_asr"] > figures["reinject_asr_before"] + 0.2, figures
    # The retuning attack, on the user's own training set with k of its rows swapped for poisons,
    # plants the trigger too; its per-epoch curve has one point per epoch.
    assert len(figures["retune_curve"]) == SEQUELA["retune"]["epochs"] and 0.0 <= figures["p_ca"] <= 1.0
    assert figures["p_asr"] > c.evaluate(result.model)["asr"] + 0.2, figures


def test_downstream_retuning_poisons_are_seeded_non_target_rows():
    labels = torch.tensor([0, 1, 2, 0, 3, 4, 0, 5])
    rows = retune.non_target_rows(labels, 0, 3, seed=1)
    assert len(rows) == 3 and len(rows.unique()) == 3 and bool((labels[rows] != 0).all())
    assert torch.equal(rows, retune.non_target_rows(labels, 0, 3, seed=1))
