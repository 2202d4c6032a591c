"""sequela@<dataset>-<attack>-<defense>: what one model leaves open to other attacks.

--defense none is the backdoored model, --defense <name> a defended one, --clean the clean reference
model (data/models/<dataset>-clean), measured with <attack>'s trigger so its re-injection ASR is the
baseline the others are compared with. Writes metrics/cells/<dataset>-<attack>-<defense>-sequela.json
("clean" in place of <defense> for the reference): membership-inference AUCs (metric attacks and the
shadow-model attack), re-injection ASR per epoch, PGD accuracy, and the wall seconds spent.
The sequela itself (value after a defense - value before) is the report's subtraction.

(Named sequela_cell.py, not sequela.py: Python puts a script's own folder first on sys.path, so a
stages/sequela.py would shadow the `sequela` package for every stage script.)"""

import argparse
import time

import layout
from sequela import data, models
from sequela.attacks import load_artefact
from sequela.config import Recipe, load_params, run_stage
from sequela.engine import Augment, pick_device, seed_everything
from sequela.io import load_tensors
from sequela.records import write_cell
from sequela.sequela.membership import member_sample, metric_attacks
from sequela.sequela.reinject import Reinjection
from sequela.sequela.robustness import pgd_accuracy
from sequela.sequela.shadow import ShadowAttack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--attack", required=True)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--defense", help="none (the backdoored model) or a defense name")
    which.add_argument("--clean", action="store_true", help="the clean reference model instead")
    args = parser.parse_args()
    params = load_params()
    recipe = Recipe.from_params(params, args.dataset)
    device = pick_device(params["device"])
    seed, settings = params["seed"], params["sequela"]
    seed_everything(seed)
    start = time.perf_counter()

    ds, _ = data.load_prepared(layout.prepared(args.dataset))
    if ds.shadow is None or ds.holdout is None or len(ds.holdout) == 0:
        raise SystemExit(f"error: {layout.prepared(args.dataset)} has no shadow or holdout split; "
                         "set data.shadow_fraction and data.holdout_fraction > 0")
    attack, poisoned, poison_meta = load_artefact(layout.poison(args.dataset, args.attack), device)
    target = poison_meta["target"]
    label = "clean" if args.clean else args.defense
    model_dir = layout.clean_model(args.dataset) if args.clean else layout.model(args.dataset, args.attack, label)
    for path, stage in ((model_dir, "the train / defend / clean stage"), (layout.shadow_model(args.dataset), "shadow@")):
        if not (path / "model.safetensors").is_file():
            raise SystemExit(f"error: {path}/model.safetensors is missing; run {stage} for it first")
    model, _ = models.load(model_dir, device)
    shadow_model, _ = models.load(layout.shadow_model(args.dataset), device)
    shadow_members = load_tensors(layout.shadow_model(args.dataset) / "members.safetensors")["members"]

    # The same members for every model of this (dataset, attack), the clean reference included:
    # clean training images only (the attacker's poisoned ones were seen triggered, with another label).
    members = ds.train.subset(member_sample(len(ds.train), len(ds.holdout), seed, exclude=poisoned))
    mia = metric_attacks(model, members, ds.holdout)
    m = settings["membership"]
    shadow_attack = ShadowAttack(m["top_k"], m["mlp"]["hidden"], m["mlp"]["epochs"], m["mlp"]["lr"], seed)
    mlp = shadow_attack.fit(shadow_model, ds.shadow, shadow_members)
    shadow = shadow_attack.evaluate(mlp, model, members, ds.holdout)

    r = settings["reinject"]
    reinjection = Reinjection(r["n_clean"], r["k"], r["epochs"], r["lr"], r["batch_size"],
                              recipe.momentum, recipe.weight_decay, seed)
    test = ds.test.to(device)
    reinjected = reinjection.run(model, ds.train, test, attack, target, Augment(recipe.crop_padding, recipe.flip))

    p = settings["pgd"]
    pgd_acc = pgd_accuracy(model, ds.test, p["eps"], p["step"], p["steps"], p["n"], seed, p["random_start"])
    seconds = time.perf_counter() - start

    write_cell({"paradigm": layout.PARADIGM, "dataset": args.dataset, "attack": args.attack, "defense": label,
                "mia_loss_auc": mia["loss_auc"], "mia_conf_auc": mia["conf_auc"],
                "mia_entropy_auc": mia["entropy_auc"], "mia_mentropy_auc": mia["mentropy_auc"],
                "mia_tpr_at_1fpr": mia["loss_tpr"], "mia_shadow_auc": shadow["auc"], "mia_shadow_acc": shadow["acc"],
                "mia_n": len(members), "reinject_asr_before": reinjected["asr_before"],
                "reinject_asr": reinjected["asr"], "reinject_mean_asr": reinjected["mean_asr"],
                "reinject_curve": [round(a, 3) for a in reinjected["curve"]],
                "pgd_acc": pgd_acc, "seconds": seconds, "device": device.type},
               layout.sequela_metrics(args.dataset, args.attack, label))
    print(f"sequela {args.dataset}-{args.attack}-{label}: MIA loss AUC {mia['loss_auc']:.3f}, shadow AUC "
          f"{shadow['auc']:.3f}, re-injection ASR {reinjected['asr_before']:.3f} -> {reinjected['asr']:.3f}, "
          f"PGD acc {pgd_acc:.3f} in {seconds:.1f} s")


if __name__ == "__main__":
    run_stage(main)
