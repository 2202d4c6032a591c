"""sequela@<dataset>-<attack>-<seed>: what each model of one cell leaves open to other attacks.

The models: the clean reference ("clean", measured with this attack's trigger, so its ASR is the
floor a trigger gets without any backdoor and its re-injection is the baseline), the backdoored
model ("none") and every defended one. For each: membership-inference AUCs (metric attacks and the
shadow-model attack), re-injection ASR (mean over epochs and draws, and the mean curve), PGD
accuracy. Writes metrics/cells/standalone/<dataset>/seed<k>/<attack>-sequela.json, one entry per
model. The sequela itself (value after a defense - value before) is the report's subtraction.

Members. All models are scored on the same seeded members: clean training rows (poisoned rows were
seen triggered and relabelled), minus any rows a defense removed before retraining (they are not
members of its model). When the defender held only part of the training split, members are also
scored in two groups: rows the defender fine-tuned on ("seen") and rows it did not ("unseen").

(Named sequela_cell.py, not sequela.py: Python puts a script's own folder first on sys.path, so a
stages/sequela.py would shadow the `sequela` package for every stage script.)"""

import argparse
import time

import torch

import layout
from sequela import data, models
from sequela.attacks import load_artefact
from sequela.config import Recipe, load_params, run_stage
from sequela.engine import Augment, pick_device, seed_everything
from sequela.io import load_tensors
from sequela.metrics import backdoor_metrics
from sequela.records import write_cell
from sequela.sequela.membership import member_groups, metric_attacks
from sequela.sequela.reinject import Reinjection, repeated
from sequela.sequela.robustness import pgd_accuracy
from sequela.sequela.shadow import ShadowAttack


def removed_rows(model_dir) -> torch.Tensor | None:
    path = model_dir / "removed.safetensors"
    return load_tensors(path)["removed"] if path.is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--attack", required=True)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args()
    params = load_params()
    recipe = Recipe.from_params(params, args.dataset)
    device = pick_device(params["device"])
    seed, settings = args.seed, params["sequela"]

    ds, _ = data.load_prepared(layout.prepared(args.dataset))
    if ds.holdout is None or len(ds.holdout) == 0:
        raise SystemExit(f"error: {layout.prepared(args.dataset)} has no membership holdout; "
                         "set data.holdout_fraction > 0")
    attack, poisoned, poison_meta = load_artefact(layout.poison(args.dataset, args.attack, seed), device)
    target = poison_meta["target"]
    test = ds.test.to(device)
    defender = data.clean_subset(len(ds.train), params["defense"]["clean_fraction"], seed)
    shadow_model, _ = models.load(layout.shadow_model(args.dataset, seed), device)
    m = settings["membership"]
    shadow_attack = ShadowAttack(m["top_k"], m["mlp"]["hidden"], m["mlp"]["epochs"], m["mlp"]["lr"], seed)
    mlp = shadow_attack.fit(shadow_model, ds.shadow, ds.shadow_out)
    r, p = settings["reinject"], settings["pgd"]
    reinjection = Reinjection(r["n_clean"], r["k"], r["epochs"], r["lr"], r["batch_size"],
                              recipe.momentum, recipe.weight_decay, seed)
    augment = Augment(recipe.crop_padding, recipe.flip)

    figures = {}
    for label in ["clean", "none", *params["grid"]["defenses"]]:
        start = time.perf_counter()
        seed_everything(seed)
        model_dir = layout.model(args.dataset, args.attack, seed, label)
        model, _ = models.load(model_dir, device)
        groups = member_groups(len(ds.train), len(ds.holdout), seed, poisoned, defender, removed_rows(model_dir))
        cell = {"asr": backdoor_metrics(model, test, attack, target)["asr"]} if label == "clean" else {}
        for group, rows in groups.items():
            suffix = "" if group == "all" else f"_{group}"
            members = ds.train.subset(rows)
            mia = metric_attacks(model, members, ds.holdout)
            shadow = shadow_attack.evaluate(mlp, model, members, ds.holdout)
            cell.update({f"mia_loss_auc{suffix}": mia["loss_auc"], f"mia_conf_auc{suffix}": mia["conf_auc"],
                         f"mia_entropy_auc{suffix}": mia["entropy_auc"],
                         f"mia_mentropy_auc{suffix}": mia["mentropy_auc"],
                         f"mia_tpr_at_1fpr{suffix}": mia["loss_tpr"], f"mia_shadow_auc{suffix}": shadow["auc"],
                         f"mia_shadow_acc{suffix}": shadow["acc"], f"mia_n{suffix}": len(rows)})
        reinjected = repeated(reinjection, r["draws"], model, ds.train, test, attack, target, augment)
        cell.update({"reinject_asr_before": reinjected["asr_before"], "reinject_asr": reinjected["mean_asr"],
                     "reinject_asr_sd_draws": reinjected["sd_draws"], "reinject_last_asr": reinjected["last_asr"],
                     "reinject_curve": [round(a, 3) for a in reinjected["curve"]],
                     "pgd_acc": pgd_accuracy(model, ds.test, p["eps"], p["step"], p["steps"], p["n"], seed,
                                             p["random_start"]),
                     "seconds": time.perf_counter() - start})
        figures[label] = cell
        print(f"sequela {args.dataset}-{args.attack}-{label} seed {seed}: MIA loss AUC {cell['mia_loss_auc']:.3f}, "
              f"shadow AUC {cell['mia_shadow_auc']:.3f}, re-injection ASR {cell['reinject_asr']:.3f}, "
              f"PGD acc {cell['pgd_acc']:.3f} in {cell['seconds']:.1f} s")
    write_cell({"paradigm": layout.PARADIGM, "dataset": args.dataset, "attack": args.attack, "seed": seed,
                "device": device.type, "models": figures}, layout.sequela_metrics(args.dataset, args.attack, seed))


if __name__ == "__main__":
    run_stage(main)
