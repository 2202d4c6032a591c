"""sequela@<dataset>-<attack>-<seed>: what each model of one cell leaves open to other attacks.

The models: the clean reference ("clean", measured with this attack's trigger, so its ASR is the
floor a trigger gets without any backdoor and its re-injection is the baseline), the backdoored
model ("none") and every defended one. For each: membership-inference AUCs (metric attacks and the
shadow-model attack), re-injection ASR (mean over epochs and draws, and the mean curve), the
retuning attack's P-ASR and CA after it, PGD accuracy. The report subtracts (after - before).

Members. All models are scored on the same seeded members: clean training rows (poisoned rows were
seen triggered and relabelled), minus any rows a defense removed before retraining (they are not
members of its model). When the defender held only part of the training split, members are also
scored in two groups: rows the defender fine-tuned on ("seen") and rows it did not ("unseen").

On a CPU the models are measured side by side, each single-threaded (sequela/workers.py). (Not
stages/sequela.py: a script's folder comes first on sys.path, it would shadow the package.)"""

import time
from types import SimpleNamespace

import layout
import torch
from opening import open_stage, run_main

from sequela import data, models
from sequela.attacks.registry import load_artefact
from sequela.engine import Augment, seed_everything
from sequela.io import load_tensors
from sequela.measures import membership, reinject, retune, robustness
from sequela.measures.shadow import ShadowAttack
from sequela.metrics import backdoor_metrics
from sequela.records import write_cell
from sequela.workers import run_units


def removed_rows(model_dir) -> torch.Tensor | None:
    path = model_dir / "removed.safetensors"  # rows a defense dropped before retraining
    return load_tensors(path)["removed"] if path.is_file() else None


# What every model of the cell is measured against, set once by main() before the workers fork.
CELL = SimpleNamespace()


def measure(label: str) -> dict:
    """Every sequela measure of one model of the cell."""
    c = CELL
    start = time.perf_counter()
    seed_everything(c.seed)
    model_dir = layout.model(c.dataset, c.attack_name, c.seed, label)
    model, _ = models.load(model_dir, c.device)
    groups = membership.member_groups(len(c.ds.train), len(c.ds.holdout), c.seed, c.poisoned, c.defender,
                                      removed_rows(model_dir), groups=c.ds.train.groups)
    cell = {"asr": backdoor_metrics(model, c.test, c.attack, c.target)["asr"]} if label == "clean" else {}
    cell.update(membership.membership_figures(model, c.ds.train, c.ds.holdout, groups, c.shadow_attack, c.mlp))
    r, p = c.settings["reinject"], c.settings["pgd"]
    reinjected = reinject.repeated(c.reinjection, r["draws"], model, c.ds.train, c.test, c.attack, c.target, c.augment)
    retuned = c.retuning.run(model, *c.retuning_set, c.test, c.attack, c.target, c.augment)
    cell.update({**reinject.figures(reinjected), **retuned, **robustness.pgd_figures(model, c.ds.test, p, c.seed),
                 "seconds": time.perf_counter() - start})
    print(f"sequela {c.dataset}-{c.attack_name}-{label} seed {c.seed}: MIA loss AUC {cell['mia_loss_auc']:.3f}, "
          f"shadow AUC {cell['mia_shadow_auc']:.3f}, re-injection ASR {cell['reinject_asr']:.3f}, "
          f"P-ASR {cell['p_asr']:.3f}, PGD acc {cell['pgd_acc']:.3f} in {cell['seconds']:.1f} s", flush=True)
    return cell


def main() -> None:
    stage = open_stage(__doc__, "dataset", "attack", "seed", recipe_of="dataset", seed=False)
    args, params, recipe, device = stage.args, stage.params, stage.recipe, stage.device
    for section in (membership, retune, robustness):
        section.check(stage.checker)
    reinject.check(stage.checker, [args.dataset])
    seed, settings = args.seed, params["sequela"]

    ds, _ = data.load_prepared(layout.prepared(args.dataset))
    if ds.holdout is None or len(ds.holdout) == 0:
        raise SystemExit(f"error: {layout.prepared(args.dataset)} has no membership holdout; "
                         "set data.holdout_fraction > 0")
    attack, poisoned, poison_meta = load_artefact(layout.poison(args.dataset, args.attack, seed), device)
    rounds = layout.backdoored_rounds(args.dataset, args.attack, seed)  # the references trained as long
    shadow_model, _ = models.load(layout.shadow_model(args.dataset, seed, rounds), device)
    shadow_attack = ShadowAttack.from_settings(settings["membership"], seed)
    defender = data.defender_rows(ds.train, params["defense"]["clean_fraction"], seed)
    retuning = retune.Retuning.from_settings(settings["retune"], len(defender), recipe.batch_size, seed)
    CELL.__dict__.update(
        dataset=args.dataset, attack_name=args.attack, seed=seed, settings=settings, device=device, ds=ds,
        attack=attack, poisoned=poisoned, target=poison_meta["target"], test=ds.test.to(device),
        defender=defender, retuning=retuning, retuning_set=retune.retuning_set(
            ds.train.subset(defender), ds.train, poisoned, retuning.k, attack, poison_meta["target"], device),
        shadow_attack=shadow_attack, mlp=shadow_attack.fit(shadow_model, ds.shadow, ds.shadow_out),
        reinjection=reinject.Reinjection.from_settings(settings["reinject"], recipe.momentum, recipe.weight_decay, seed),
        augment=Augment(recipe.crop_padding, recipe.flip))

    labels = ["clean", "none", *params["grid"]["defenses"]]
    figures = dict(zip(labels, run_units(measure, labels, device)))
    write_cell({"paradigm": layout.STANDALONE, "dataset": args.dataset, "attack": args.attack, "seed": seed,
                "device": device.type, "models": figures}, layout.sequela_metrics(args.dataset, args.attack, seed))


if __name__ == "__main__":
    run_main(main)
