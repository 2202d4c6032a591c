"""The six baseline defenses against the planted BadNets backdoor (tests/conftest.py), on the CPU.

Post-training defenses (FP, NAD, NC) must lower its ASR; training-time ones (ABL, AC, Spectral)
must single out mostly poisoned samples; NC must flag the target; FP must stop at its bound."""

import copy
import math

import pytest
import torch

from conftest import make_blobs
from sequela.datasets.splits import Split
from sequela.defenses import fp, spectral
from sequela.defenses.base import DefenseContext
from sequela.defenses.registry import DEFENSES
from sequela.metrics import evaluate
from sequela.pipeline.records import CurveRecorder
from sequela.training.recipe import Recipe

PARAMS = {
    "ft": {"lr": 0.01},
    "sft": {"base_lr": 3e-4, "max_lr1": 0.1, "max_lr2": 1e-3, "phase1_fraction": 0.4, "cycle_steps": 20},
    "fp": {"acc_drop": 0.1, "holdout_fraction": 0.2, "lr": 0.05},
    "nad": {"te_epochs": 3, "lr": 0.01, "betas": [500, 1000, 1000], "p": 2},
    "nc": {
        "steps": 600,
        "batch_size": 8,
        "lr": 0.1,
        "init_cost": 1e-3,
        "cost_multiplier": 1.5,
        "check_every": 10,
        "asr_threshold": 0.99,
        "patience": 5,
        "anomaly_threshold": 2.0,
        "unlearn_share": 0.2,
        "lr_unlearn": 0.01,
    },
    "abl": {
        "isolation_epochs": 4,
        "gamma": 0.5,
        "isolation_ratio": 0.02,
        "unlearning_epochs": 3,
        "unlearning_lr": 5e-4,
    },
    "fst": {"lr": 0.01, "alpha": 0.2},
    "ftsam": {"lr": 0.01, "rho": 2.0, "eta": 0.01, "label_smoothing": 0.1},
    "ep": {"lr": 0.01, "share": 0.1},
    "btidbf": {
        "width": 8,
        "depth": 1,
        "rounds": 2,
        "pretrain_epochs": 3,
        "mask_epochs": 3,
        "invert_epochs": 5,
        "mask_lr": 0.01,
        "generator_lr": 1e-3,
        "norm_bound": 0.3,
        "feature_bound": 3.0,
        "benign_weight": 0.01,
        "share": 0.1,
        "lr": 1e-3,
    },
    "pam": {
        "width": 8,
        "depth": 1,
        "rounds": 2,
        "pretrain_epochs": 3,
        "mask_epochs": 3,
        "invert_epochs": 5,
        "mask_lr": 0.01,
        "generator_lr": 1e-3,
        "norm_bound": 0.3,
        "feature_bound": 3.0,
        "benign_weight": 0.01,
        "share": 0.2,
        "lr": 0.01,
        "momentum": 0.1,
        "rho": 0.5,
    },
    "sau": {
        "lr": 1e-3,
        "eps": 0.2,
        "step": 0.2,
        "steps": 5,
        "beta1": 0.01,
        "beta2": 1.0,
        "lambda1": 1.0,
        "lambda2": 0.0,
        "lambda3": 1.0,
    },
    "ac": {"components": 10, "size_threshold": 0.35},
    "spectral": {"removal_factor": 1.5, "eps": 0.1, "budget": "stated"},
}
SPEC = {"arch": "small_cnn", "in_channels": 1, "num_classes": 4, "mean": [0.2], "std": [0.25], "width": 8}


def context(planted, name, epochs=3, recipe=None, **overrides):
    test, attack, target = planted["test"], planted["attack"], planted["target"]
    recipe = recipe or Recipe(model="small_cnn", epochs=6, batch_size=32, lr=0.05, crop_padding=1, width=8)
    return DefenseContext(
        model=copy.deepcopy(planted["model"]),
        clean=planted["train"],
        train=planted["train"],
        poisoned=planted["poisoned"],
        attack=attack,
        target=target,
        recipe=recipe,
        epochs=epochs,
        params={**PARAMS[name], **overrides},
        common={"momentum": 0.9, "weight_decay": 5e-4},
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(0),
        recorder=CurveRecorder(lambda m: evaluate(m, test, attack, target)),
        spec=planted.get("spec", SPEC),
        poison_rate=len(planted["poisoned"]) / len(planted["train"]),
        seed=0,
    )


def metrics(model, planted):
    return evaluate(model, planted["test"], planted["attack"], planted["target"])


@pytest.fixture(scope="module")
def nc_run(planted_digits):
    # NC's median-absolute-deviation test needs many classes: the 4-class blobs give it 4 norms,
    # too few for any outlier to stand 2 MADs out, so NC is tested on the 10-class digits.
    ctx = context(planted_digits, "nc")
    return ctx, DEFENSES["nc"].run(ctx)


@pytest.mark.parametrize("name", ["fp", "nad", "nc", "fst", "ftsam", "ep", "sau", "btidbf", "pam"])
def test_post_training_defense_lowers_asr_and_keeps_accuracy(planted, planted_digits, nc_run, name):
    fixture = planted_digits if name == "nc" else planted
    if name == "nc":
        ctx, _ = nc_run
    else:
        # PAM's rho is a distance in weight space: 0.5 (the reference's, for a ResNet-18) is 5% of
        # this 6k-weight CNN's whole norm (10.7) and costs it 0.25 CA; 0.1 is the same kind of step here.
        ctx = context(planted, name, **({"rho": 0.1} if name == "pam" else {}))
        DEFENSES[name].run(ctx)
    before, after = metrics(fixture["model"], fixture), metrics(ctx.model, fixture)
    assert before["asr"] > 0.9 and after["asr"] < before["asr"] - 0.5
    assert after["ca"] > before["ca"] - 0.1
    assert [row["epoch"] for row in ctx.recorder.rows] == [1, 2, 3]


def test_ep_stamps_its_share_of_clean_rows_with_the_real_trigger_under_true_labels(planted):
    from sequela.defenses.ep import triggered_rows
    from sequela.engine.batches import BatchStream

    clean, attack = planted["train"], planted["attack"]
    rows = triggered_rows(len(clean), 0.1, torch.Generator().manual_seed(0))
    assert len(rows) == round(0.1 * len(clean)) and len(set(rows.tolist())) == len(rows)
    stream = BatchStream(
        clean.x,
        clean.y,
        len(clean),
        torch.device("cpu"),
        torch.Generator(),
        shuffle=False,
        attack=attack,
        poisoned=rows,
        target=planted["target"],
        relabel=False,
    )
    ((x, y),) = list(stream)
    flags = torch.zeros(len(clean), dtype=torch.bool)
    flags[rows] = True
    assert torch.equal(y, clean.y)  # true labels, the target's included
    assert torch.equal(x[flags], attack.apply(clean.x[flags].float() / 255))
    assert torch.equal(x[~flags], clean.x[~flags].float() / 255)
    # The registry keeps it out of what a defender may run: it knows the trigger.
    from sequela.defenses.registry import CLEAN_DATA_ONLY

    assert DEFENSES["ep"].knows_trigger and "ep" not in CLEAN_DATA_ONLY


def test_sau_finds_shared_adversarial_examples_within_its_radius(planted):
    from sequela.defenses.sau import js_divergence, shared_perturbation

    model = copy.deepcopy(planted["model"]).eval()
    other = copy.deepcopy(planted["model"]).eval()
    with torch.no_grad():  # a second model that differs: a few noisy weights
        for q in other.parameters():
            q.add_(torch.randn(q.shape, generator=torch.Generator().manual_seed(1)) * 0.01)
    x, y = planted["test"].x[:64].float() / 255, planted["test"].y[:64]
    # A weight of 1 on the adversarial term (the config's 0.01 is too weak for 5 steps on these blobs).
    delta = shared_perturbation(model, other, x, y, {**PARAMS["sau"], "beta1": 1.0})
    assert float(delta.abs().max()) <= PARAMS["sau"]["eps"] + 1e-6

    def shared_share(d):
        with torch.no_grad():
            pred, pred0, clean = model(x + d).argmax(1), other(x + d).argmax(1), model(x).argmax(1)
        return float(((pred == pred0) & (pred != clean)).float().mean())

    noise = (torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1).sign() * PARAMS["sau"]["eps"]
    assert shared_share(delta) > 0.6 and shared_share(delta) > shared_share(noise) + 0.3
    p = torch.tensor([[0.2, 0.8]])
    assert float(js_divergence(p, p)) == pytest.approx(0.0, abs=1e-7)
    assert float(js_divergence(p, torch.tensor([[0.8, 0.2]]))) > 0.1


def test_btidbf_inverts_toward_the_planted_target_from_clean_images_alone(planted):
    from sequela.defenses.btidbf import Inversion, UNet

    net = UNet(1, width=8, depth=2)
    assert net(torch.rand(3, 1, 16, 16)).shape == (3, 1, 16, 16)
    ctx = context(planted, "btidbf")
    inversion = Inversion(ctx, PARAMS["btidbf"])
    inversion.pretrain()
    x = planted["train"].x[:64].float() / 255
    with torch.no_grad():
        assert float(torch.nn.functional.mse_loss(inversion.generator(x), x)) < 0.1  # near the identity
    inversion.fit_mask()
    assert inversion.mask.shape == ctx.model.stage_outputs(x[:1])[-1].shape[1:]
    inversion.invert(0)
    assert inversion.target == planted["target"]  # nobody told it the target
    mixed = inversion.mix(x[:10], 0.2)
    assert int((mixed != x[:10]).flatten(1).any(1).sum()) == int(0.2 * 10) + 1


def test_pam_takes_each_gradient_rho_toward_the_backdoored_weights_and_returns():
    from sequela.defenses.pam import toward

    params = [torch.zeros(3), torch.zeros(2, 2)]
    anchor = [torch.tensor([3.0, 0.0, 0.0]), torch.full((2, 2), 0.0)]
    steps = toward(params, anchor, rho=0.5)
    assert torch.allclose(params[0], torch.tensor([0.5, 0.0, 0.0])) and float(params[1].abs().sum()) == 0.0
    assert float(torch.norm(torch.stack([s.norm() for s in steps]))) == pytest.approx(0.5)
    same = [a.clone() for a in anchor]
    assert all(float(s.abs().sum()) == 0.0 for s in toward(same, anchor, rho=0.5))  # at the anchor: no move


def test_fst_holds_the_head_norm_and_its_penalty_pushes_the_head_away(planted):
    from sequela.defenses.fst import last_linear

    original = last_linear(planted["model"].fc).weight.detach().clone()
    cosines = {}
    for alpha in (0.0, 0.2):
        ctx = context(planted, "fst", alpha=alpha)
        figures = DEFENSES["fst"].run(ctx)
        head = last_linear(ctx.model.fc).weight.detach()
        assert torch.allclose(head.norm(), original.norm(), rtol=1e-5)
        cosines[alpha] = figures["head_cosine_to_original"]
    assert cosines[0.2] < cosines[0.0] - 0.05, cosines


def test_ftsam_ascends_rho_in_the_weight_scaled_norm_and_returns_to_the_weights(planted):
    from sequela.training.sharpness import ascent

    model = copy.deepcopy(planted["model"])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x, y = planted["train"].x[:32].float() / 255.0, planted["train"].y[:32]
    torch.nn.functional.cross_entropy(model(x), y).backward()
    moved = ascent(model, rho=2.0, eta=0.01)
    scaled = [
        eps / (before[n].abs() + 0.01) if n.endswith("weight") else eps
        for (n, _), (_, eps) in zip([(n, p) for n, p in model.named_parameters() if p.grad is not None], moved)
    ]
    assert torch.isclose(torch.norm(torch.stack([s.norm() for s in scaled])), torch.tensor(2.0), rtol=1e-4)
    with torch.no_grad():
        for param, eps in moved:
            param.sub_(eps)
    assert all(torch.allclose(p, before[n], atol=1e-6) for n, p in model.named_parameters())


def test_nc_flags_the_target_class_with_the_smallest_mask(nc_run):
    _, extra = nc_run
    norms = extra["mask_norms"]
    assert 0 in extra["flagged"] and extra["unlearned"]
    assert norms[0] == min(norms) and extra["anomaly_index"][0] > 2.0
    # The MAD test may also flag an innocent class near the 2-MAD line: on one 2-core machine it
    # flagged [0], on another [0, 8] (the same seeds; float rounding differs between CPUs).
    assert len(extra["flagged"]) <= 2


def test_fp_prunes_up_to_its_accuracy_bound_and_no_further(planted):
    ctx = context(planted, "fp", epochs=0)  # no fine-tuning: look at the pruned model itself
    original = copy.deepcopy(ctx.model)
    extra = DEFENSES["fp"].run(ctx)
    k, acc_drop = extra["pruned"], PARAMS["fp"]["acc_drop"]
    assert k > 0 and int((ctx.model.channel_mask == 0).sum()) == k

    rest, holdout = fp.split_clean(ctx.clean, PARAMS["fp"]["holdout_fraction"], ctx.seed)
    order = fp.activation_order(original, rest)

    def holdout_acc(model):
        return evaluate(model, holdout, planted["attack"], planted["target"])["ca"]

    base = holdout_acc(original)
    assert extra["holdout_acc_before"] == pytest.approx(base)
    assert holdout_acc(ctx.model) >= base - acc_drop - 1e-6
    one_more = copy.deepcopy(ctx.model)
    one_more.channel_mask[order[k]] = 0.0
    assert holdout_acc(one_more) < base - acc_drop


def test_ac_removes_a_minority_poison_cluster_and_retrains_clean(planted):
    # AC's premise: the poison forms one cluster holding a minority of its label. Here the attacker
    # poisoned only images of class 1 (~30 of the target label's ~230 rows). With all three source
    # classes 2-means splits the poison by source class instead: see test_filtering_precision.
    ctx = context(planted, "ac")
    ctx.poisoned = planted["poisoned"][planted["train"].y[planted["poisoned"]] == 1]
    extra = DEFENSES["ac"].run(ctx)
    assert extra["flagged_labels"] == [0] and extra["precision"] > 0.9 and extra["recall"] > 0.9
    assert [row["epoch"] for row in ctx.recorder.rows] == list(range(1, ctx.recipe.epochs + 1))
    assert metrics(ctx.model, planted)["asr"] < 0.1


@pytest.mark.parametrize("name", ["ac", "spectral"])
def test_filtering_precision(planted, name):
    ctx = context(planted, name)
    extra = DEFENSES[name].run(ctx)
    target_rows = int((planted["train"].y == 0).sum()) + len(planted["poisoned"])
    if name == "ac":
        assert extra["flagged_labels"] == [0] and extra["precision"] > 0.9 and extra["recall"] > 0.3
    else:
        # 1.5 x the stated bound 0.1 of every label: within the target label that budget should be
        # all poison; the other labels' removals are clean by construction.
        budget = spectral.removal_count(0.1, 1.5, target_rows)
        assert extra["removed_poisoned"] >= 0.9 * budget and extra["recall"] > 0.4
    assert [row["epoch"] for row in ctx.recorder.rows] == list(range(1, ctx.recipe.epochs + 1))


def test_abl_isolates_mostly_poison_and_unlearns(planted_digits):
    # ABL's premise is that the trigger is learned before the clean task. On the 4-class blobs the
    # clean task is learned within one epoch, so ABL runs on digits; without the random crop, which
    # partly cuts the corner trigger off and slows its learning on 16x16 images.
    recipe = Recipe(model="small_cnn", epochs=6, batch_size=16, lr=0.01, width=8)
    ctx = context(planted_digits, "abl", recipe=recipe)
    extra = DEFENSES["abl"].run(ctx)
    assert extra["isolated"] == math.ceil(0.02 * len(planted_digits["train"])) and extra["precision"] > 0.8
    rows = ctx.recorder.rows
    assert [row["epoch"] for row in rows] == list(range(1, recipe.epochs + PARAMS["abl"]["unlearning_epochs"] + 1))
    assert rows[-1]["asr"] < rows[recipe.epochs - 1]["asr"] - 0.3  # unlearning removes the backdoor


def same_weights(a, b) -> bool:
    return all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_nc_that_flags_nothing_returns_the_model_unchanged(planted_digits):
    ctx = context(planted_digits, "nc", steps=60, anomaly_threshold=1e9)  # no class can be that far out
    extra = DEFENSES["nc"].run(ctx)
    assert extra["flagged"] == [] and not extra["unlearned"] and extra["epochs_trained"] == 0
    assert same_weights(ctx.model, planted_digits["model"]) and ctx.recorder.rows == []


def test_ac_that_flags_nothing_returns_the_model_unchanged(planted):
    ctx = context(planted, "ac", size_threshold=0.0)  # no cluster is that small
    extra = DEFENSES["ac"].run(ctx)
    assert extra["flagged_labels"] == [] and extra["removed"] == 0 and extra["epochs_trained"] == 0
    assert same_weights(ctx.model, planted["model"]) and ctx.recorder.rows == []


def test_spectral_removes_per_label_at_most_half():
    # The reference's rule: min(1.5 x eps x |label|, |label| / 2) per label.
    assert spectral.removal_count(0.1, 1.5, 250) == 38  # ceil(37.5)
    assert spectral.removal_count(0.4, 1.5, 250) == 125  # 150 capped at half
    assert spectral.removal_count(0.1, 1.5, 3) == 1
    # eps: the stated bound; the oracles: the poison rate, the target label's poisoned share.
    assert spectral.bound("stated", 0.05, 0.1, 100, 250) == 0.05
    assert spectral.bound("oracle_rate", 0.05, 0.1, 100, 250) == 0.1
    assert spectral.bound("oracle_label", 0.05, 0.1, 100, 250) == pytest.approx(0.4)


@pytest.mark.parametrize("name", sorted(DEFENSES))
def test_no_defense_depends_on_the_test_split(planted, name):
    """Every defense records its curve on the test split; swapping that split for another must leave
    the defended model byte-identical (the defender never trains or chooses on test data)."""
    inversion = {"pretrain_epochs": 1, "mask_epochs": 1, "invert_epochs": 1}  # the property, not the inversion
    quick = {
        "nc": {"steps": 30, "anomaly_threshold": 0.0},
        "nad": {"te_epochs": 1},
        "abl": {"isolation_epochs": 1},
        "btidbf": inversion,
        "pam": inversion,
    }
    recipe = Recipe(model="small_cnn", epochs=2, batch_size=32, lr=0.05, crop_padding=1, width=8)
    defended = []
    for test in (planted["test"], make_blobs(150, seed=9)):
        ctx = context({**planted, "test": test}, name, epochs=1, recipe=recipe, **quick.get(name, {}))
        DEFENSES[name].run(ctx)
        assert ctx.recorder.rows or name in ("nc", "ac")  # the curve was evaluated on this test split
        defended.append(ctx.model)
    assert same_weights(*defended)


def colour_blobs(n: int, seed: int) -> Split:
    """make_blobs at 32x32, three channels: the shape of the paper's datasets."""
    grey = make_blobs(n, size=32, seed=seed)
    return Split(grey.x.repeat(1, 3, 1, 1), grey.y)


COMPACT_RECIPE = Recipe(model="compact_cnn", epochs=2, batch_size=32, lr=0.05, crop_padding=2, width=4)


def compact_fixture(n_train: int, n_test: int) -> dict:
    """A BadNets-poisoned colour-blob set and an untrained compact CNN of width 4: the 32x32 model
    the CPU recipe uses, channels_last included."""
    from sequela import models
    from sequela.attacks.registry import ATTACKS, choose_poison_indices

    spec = {
        "arch": "compact_cnn",
        "in_channels": 3,
        "num_classes": 4,
        "mean": [0.2] * 3,
        "std": [0.25] * 3,
        "width": 4,
        "input_shape": [3, 32, 32],
    }
    train, test = colour_blobs(n_train, seed=0), colour_blobs(n_test, seed=1)
    g = torch.Generator().manual_seed(0)
    attack = ATTACKS["badnets"].create({"size": 3}, train.x, train.y, 0, g)
    return {
        "model": models.build_from_spec(spec),
        "train": train,
        "test": test,
        "attack": attack,
        "poisoned": choose_poison_indices(train.y, 0, 0.1, g),
        "target": 0,
        "spec": spec,
    }


@pytest.mark.parametrize("name", sorted(DEFENSES))
def test_every_defense_runs_on_the_compact_cnn_for_32x32_images(name):
    """The defenses find their layers by name (stages, channel_mask, features), so the 32x32 model
    needs no defense-specific code: each runs end to end on it and leaves a working classifier."""
    from sequela import models

    quick = {"nc": {"steps": 20}, "nad": {"te_epochs": 1}, "abl": {"isolation_epochs": 1, "unlearning_epochs": 1}}
    ctx = context(compact_fixture(96, 40), name, epochs=1, recipe=COMPACT_RECIPE, **quick.get(name, {}))
    DEFENSES[name].run(ctx)
    assert isinstance(ctx.model, models.Classifier) and ctx.model.fc.in_features == 16
    assert ctx.model(torch.rand(2, 3, 32, 32)).shape == (2, 4)


@pytest.mark.parametrize("name", ["sau", "btidbf", "pam"])
def test_the_costliest_defenses_run_under_cpu_bf16_and_leave_float32_weights(name):
    """Where a recipe sets cpu_bf16, SAU (its inner PGD) and BTI-DBF(U) and PAM (their generator)
    run their forward passes under bf16 autocast; the weights they leave stay float32."""
    from sequela.engine import device

    short = {} if name == "sau" else {"pretrain_epochs": 1, "mask_epochs": 1, "invert_epochs": 2}
    ctx = context(compact_fixture(64, 32), name, epochs=1, recipe=COMPACT_RECIPE, **short)
    before = copy.deepcopy(ctx.model.state_dict())
    device.use_cpu_bf16(True)
    try:
        DEFENSES[name].run(ctx)
    finally:
        device.use_cpu_bf16(False)
    after = ctx.model.state_dict()
    assert all(v.dtype == before[k].dtype for k, v in after.items())
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    assert not all(torch.equal(v, before[k]) for k, v in after.items())  # it unlearned something


def shipped_defense_section() -> dict:
    from pathlib import Path

    import yaml

    return yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())["defense"]


def test_ftsam_takes_the_papers_gtsrb_settings_on_gtsrb_and_its_cifar10_ones_elsewhere():
    from sequela.defenses.base import defense_settings

    section = shipped_defense_section()
    gtsrb, digits = defense_settings(section, "ftsam", "gtsrb"), defense_settings(section, "ftsam", "digits")
    assert (gtsrb["rho"], gtsrb["label_smoothing"]) == (8.0, 0.0)
    assert (digits["rho"], digits["label_smoothing"]) == (2.0, 0.1)
    assert gtsrb["lr"] == digits["lr"] and gtsrb["eta"] == digits["eta"]  # what the entry does not name
    assert "per_dataset" not in gtsrb and defense_settings(section, "ftsam") == digits
    assert defense_settings(section, "ftsam", "gtsrb", {"rho": 3.0})["rho"] == 3.0  # a benchmark's override wins
    assert defense_settings(section, "ft", "gtsrb") == section["ft"]  # a block without entries is as it is


@pytest.mark.parametrize(
    "entries, message",
    [
        (
            {"gtrsb": {"rho": 8.0}},
            "defense.ftsam.per_dataset = 'gtrsb' is not allowed; allowed: entries named by datasets: ",
        ),
        (
            {"gtsrb": {"momentum": 0.5}},
            "defense.ftsam.per_dataset.gtsrb = 'momentum' is not allowed; allowed: settings "
            "of defense.ftsam: lr, rho, eta, label_smoothing",
        ),
        (
            {"gtsrb": {"rho": -1.0}},
            r"defense.ftsam.per_dataset.gtsrb.rho = -1.0 is not allowed; allowed: a number in \(0",
        ),
        ({"gtsrb": {}}, "defense.ftsam.per_dataset.gtsrb = {} is not allowed"),
        (["gtsrb"], "defense.ftsam.per_dataset = \\['gtsrb'\\] is not allowed"),
    ],
)
def test_ftsam_per_dataset_entries_are_checked_like_the_block(entries, message):
    from sequela.pipeline.checker import Checker
    from sequela.pipeline.errors import ConfigError

    section = shipped_defense_section()
    ftsam_params = {**section["ftsam"], "per_dataset": entries}
    with pytest.raises(ConfigError, match=message) as err:
        DEFENSES["ftsam"].check(Checker({"defense": {"ftsam": ftsam_params}}), "defense.ftsam")
    assert "\n" not in str(err.value)
    shipped = Checker({"defense": section})
    DEFENSES["ftsam"].check(shipped, "defense.ftsam")  # the shipped entry passes and is read
    assert "defense.ftsam.per_dataset.gtsrb.rho" in shipped.read


def planted_cell(planted, **changes):
    """The planted model as the defend stage hands it to a defense (one epoch, 128 clean rows);
    `changes` replaces any of its fields."""
    from sequela.defenses.apply import Defended

    fields = dict(
        backdoored=planted["model"],
        spec=SPEC,
        clean=planted["train"].subset(torch.arange(128)),
        train=planted["train"],
        poisoned=planted["poisoned"],
        attack=planted["attack"],
        target=planted["target"],
        poison_rate=0.1,
        recipe=Recipe(model="small_cnn", epochs=6, batch_size=64, lr=0.05, width=8),
        device=torch.device("cpu"),
        settings={**shipped_defense_section(), "epochs": 1, "batch_size": None},
        seed=0,
        test=planted["test"],
    )
    return Defended(**{**fields, **changes})


def test_the_defense_cell_records_the_ftsam_settings_that_ran_for_its_dataset(planted):
    from sequela.defenses.apply import apply_defense

    ran = {}
    for dataset in ("gtsrb", "digits", None):
        figures = apply_defense("ftsam", DEFENSES["ftsam"].run, planted_cell(planted, dataset=dataset)).figures
        ran[dataset] = (figures["rho"], figures["label_smoothing"])
    assert ran == {"gtsrb": (8.0, 0.0), "digits": (2.0, 0.1), None: (2.0, 0.1)}


def test_a_cell_without_a_backdoor_gets_ca_only_and_the_same_model_as_with_one(planted):
    """The benign condition: a cell with no attack runs the same defense and reports CA alone."""
    from sequela.defenses.apply import apply_defense

    outcomes = {}
    for attack in (planted["attack"], None):
        cell = planted_cell(planted, attack=attack, poisoned=torch.empty(0, dtype=torch.long), poison_rate=0.0)
        outcomes[attack is None] = apply_defense("sft", DEFENSES["sft"].run, cell)
    with_trigger, without = outcomes[False], outcomes[True]
    assert "asr" in with_trigger.figures and "asr" not in without.figures and "ra" not in without.figures
    assert without.figures["ca"] == with_trigger.figures["ca"]
    assert all(
        torch.equal(a, b) for a, b in zip(with_trigger.model.state_dict().values(), without.model.state_dict().values())
    )
