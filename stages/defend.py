"""defend@<dataset>-<attack>-<seed>: the backdoored model after each defense of grid.defenses.

One process runs every defense of the cell: on digits a stage's start-up (imports) costs more than
most defenses, and every defense reads the same backdoored model, data and poison artefact. Each
defense starts from its own copy of the backdoored model and its own seeded generator, so its
result does not depend on which other defenses are in the grid or in what order they run.

The defender's view: its clean subset (`defense.clean_fraction` of the clean training split, drawn
with the seed) and, for the training-time defenses, the poisoned training set as shipped. The test
split is only read to record the per-epoch curve, in eval mode: no defense's training touches it.

Per defense, writes data/standalone/<dataset>/seed<k>/<attack>/<defense>/ (weights + spec, and
removed.safetensors for a defense that drops training rows: they are not members of its model),
the cell's figures and the per-epoch curve (epoch 0 = before the defense). On a CPU the defenses run
side by side, each single-threaded (sequela/workers.py)."""

from functools import partial

from sequela import models
from sequela.attacks.registry import load_artefact
from sequela.datasets import splits
from sequela.defenses.apply import Defended, apply_defense
from sequela.defenses.registry import DEFENSES, check_defenses
from sequela.pipeline import layout
from sequela.pipeline.io import save_tensors
from sequela.pipeline.records import write_cell, write_curve
from sequela.workers import run_units
from stage import open_stage, run_main


def defend(cell: Defended, attack: str, name: str) -> dict:
    """One defense on its own copy of the backdoored model; saves the model and its curve."""
    outcome = apply_defense(name, DEFENSES[name].run, cell)
    dataset, seed = cell.dataset, cell.seed
    out = layout.model(dataset, attack, seed, name)
    if outcome.removed_rows is not None:  # dropped before retraining: not members of its model
        save_tensors({"removed": outcome.removed_rows}, layout.removed(out))
    models.save(outcome.model, cell.spec, out)
    write_curve(outcome.curve, layout.defense_curve(dataset, attack, seed, name))
    f = outcome.figures
    print(
        f"defend {dataset}-{attack}-{name} seed {seed}: CA {f['ca']:.3f} ASR {f['asr']:.3f} RA {f['ra']:.3f} "
        f"in {f['seconds']:.1f} s",
        flush=True,
    )
    return f


def main() -> None:
    stage = open_stage(__doc__, "dataset", "attack", "seed", recipe_of="dataset", seed=False)
    args, params, device, seed = stage.args, stage.params, stage.device, stage.args.seed
    check_defenses(stage.checker)
    settings = params["defense"]

    ds, _ = splits.load_prepared(layout.prepared(args.dataset))
    attack, poisoned, poison_meta = load_artefact(layout.poison(args.dataset, args.attack, seed), device)
    backdoored, spec = models.load(layout.model(args.dataset, args.attack, seed), device)
    cell = Defended(
        backdoored=backdoored,
        spec=spec,
        train=ds.train,
        poisoned=poisoned,
        attack=attack,
        target=poison_meta["target"],
        poison_rate=poison_meta["poison_rate"],
        recipe=stage.recipe,
        device=device,
        settings=settings,
        seed=seed,
        test=ds.test.to(device),
        curve_test=ds.test.sample(params["curves"]["eval_n"], seed).to(device),
        clean=ds.train.subset(splits.defender_rows(ds.train, settings["clean_fraction"], seed)),
        rounds=layout.backdoored_rounds(args.dataset, args.attack, seed),
        dataset=args.dataset,
    )

    names = params["grid"]["defenses"]
    cells = dict(zip(names, run_units(partial(defend, cell, args.attack), names, device)))
    write_cell(
        {
            "paradigm": layout.STANDALONE,
            "dataset": args.dataset,
            "attack": args.attack,
            "seed": seed,
            "device": device.type,
            "defenses": cells,
        },
        layout.defense_metrics(args.dataset, args.attack, seed),
    )


if __name__ == "__main__":
    run_main(main)
