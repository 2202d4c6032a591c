"""measure@<dataset>-<attack>-<seed>: what each model of one cell leaves open to other attacks.

The models: the clean reference ("clean", measured with this attack's trigger, so its ASR is the
floor a trigger gets without any backdoor and its re-injection is the baseline), the backdoored
model ("none") and every defended one. For each: membership-inference AUCs (metric attacks and the
shadow-model attack), re-injection ASR (mean over epochs and draws, and the mean curve), the
retuning attack's P-ASR and CA after it, PGD accuracy. The report subtracts (after - before).

Members. All models are scored on the same seeded members: clean training rows (poisoned rows were
seen triggered and relabelled), minus any rows a defense removed before retraining (they are not
members of its model). When the defender held only part of the training split, members are also
scored in two groups: rows the defender fine-tuned on ("seen") and rows it did not ("unseen").

The measures are those of measures/registry.py, in its order. On a CPU the models are measured side
by side, each single-threaded (sequela/workers.py). (Not stages/sequela.py: a script's folder comes
first on sys.path, it would shadow the package.)"""

import time
from functools import partial

from sequela import models
from sequela.attacks.registry import load_artefact
from sequela.datasets import splits
from sequela.engine.device import seed_everything
from sequela.measures import registry
from sequela.metrics import backdoor_metrics
from sequela.pipeline import layout
from sequela.pipeline.io import load_tensors
from sequela.pipeline.records import write_cell
from sequela.workers import run_units
from stage import open_stage, run_main


def measure(cell: registry.StandaloneCell, measures: list, dataset: str, attack: str, label: str) -> dict:
    """Every sequela measure of one model of the cell; the clean reference's ASR is the trigger's floor."""
    start = time.perf_counter()
    seed_everything(cell.seed)
    model_dir = layout.model(dataset, attack, cell.seed, label)
    model, _ = models.load(model_dir, cell.device)
    figures = {"asr": backdoor_metrics(model, cell.test, cell.trigger, cell.target)["asr"]} if label == "clean" else {}
    removed = load_tensors(path)["removed"] if (path := layout.removed(model_dir)).is_file() else None
    figures.update(registry.measure(measures, model, removed))
    figures["seconds"] = time.perf_counter() - start
    print(
        f"sequela {dataset}-{attack}-{label} seed {cell.seed}: MIA loss AUC {figures['mia_loss_auc']:.3f}, "
        f"shadow AUC {figures['mia_shadow_auc']:.3f}, re-injection ASR {figures['reinject_asr']:.3f}, "
        f"P-ASR {figures['p_asr']:.3f}, PGD acc {figures['pgd_acc']:.3f} in {figures['seconds']:.1f} s",
        flush=True,
    )
    return figures


def main() -> None:
    stage = open_stage(__doc__, "dataset", "attack", "seed", recipe_of="dataset", seed=False)
    args, params, device, seed = stage.args, stage.params, stage.device, stage.args.seed
    registry.check(stage.checker, [args.dataset])

    ds, _ = splits.load_prepared(layout.prepared(args.dataset))
    if ds.holdout is None or len(ds.holdout) == 0:
        raise SystemExit(
            f"error: {layout.prepared(args.dataset)} has no membership holdout; set data.holdout_fraction > 0"
        )
    attack, poisoned, poison_meta = load_artefact(layout.poison(args.dataset, args.attack, seed), device)
    rounds = layout.backdoored_rounds(args.dataset, args.attack, seed)  # the references trained as long
    shadow_model, _ = models.load(layout.shadow_model(args.dataset, seed, rounds), device)
    defender = splits.defender_rows(ds.train, params["defense"]["clean_fraction"], seed)
    cell = registry.StandaloneCell(
        ds,
        ds.test.to(device),
        attack,
        poison_meta["target"],
        stage.recipe,
        seed,
        device,
        poisoned,
        defender,
        shadow_model,
    )
    measures = registry.prepare(cell, params["sequela"], "standalone")

    labels = ["clean", "none", *params["grid"]["defenses"]]
    figures = dict(zip(labels, run_units(partial(measure, cell, measures, args.dataset, args.attack), labels, device)))
    write_cell(
        {
            "paradigm": layout.STANDALONE,
            "dataset": args.dataset,
            "attack": args.attack,
            "seed": seed,
            "device": device.type,
            "models": figures,
        },
        layout.sequela_metrics(args.dataset, args.attack, seed),
    )


if __name__ == "__main__":
    run_main(main)
