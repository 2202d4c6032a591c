"""train@<dataset>-<attack>-<seed>: the backdoored model, trained on the poisoned training set.

The attacker trains the recipe's epochs, then further rounds while its own check on its held-out split
misses `attack.budget.min_asr`, or exactly `attack.budget.rounds` rounds where that is set
(src/sequela/training/attacker.py). Writes
data/standalone/<dataset>/seed<k>/backdoored/<attack>/none/ (weights + spec), the "none" cell's
figures (with the rounds trained and the attacker's held-out figures) and the training curve."""

from sequela import models
from sequela.attacks.registry import load_artefact
from sequela.datasets import splits
from sequela.metrics import evaluate
from sequela.pipeline import layout
from sequela.pipeline.records import write_cell, write_curve
from sequela.training import attacker
from sequela.training.classifier import model_spec
from stage import open_stage, run_main


def main() -> None:
    stage = open_stage(__doc__, "dataset", "attack", "seed", recipe_of="dataset")
    args, params = stage.args, stage.params
    recipe, device = stage.recipe, stage.device
    attacker.check(stage.checker, [args.attack])
    rule = params["attack"]["budget"]

    ds, meta = splits.load_prepared(layout.prepared(args.dataset))
    attack, poisoned, poison_meta = load_artefact(layout.poison(args.dataset, args.attack, args.seed), device)
    target = poison_meta["target"]
    test = ds.test.to(device)
    curve_test = test.sample(params["curves"]["eval_n"], args.seed)
    spec = model_spec(recipe, ds.image_shape, ds.num_classes, meta["mean"], meta["std"])
    planted, max_rounds = attacker.budget(rule, args.attack, ds.shadow.to(device), attack, target)
    run = attacker.train_backdoored(
        ds.train,
        spec,
        recipe,
        device,
        args.seed,
        params["attack"][args.attack],
        attack,
        poisoned,
        target,
        planted,
        max_rounds,
        evaluate=lambda m: evaluate(m, curve_test, attack, target),
        desc=f"train {args.dataset}-{args.attack} seed {args.seed}",
    )

    final = evaluate(run.model, test, attack, target)
    models.save(run.model, spec, layout.model(args.dataset, args.attack, args.seed))
    write_curve(run.curve, layout.train_curve(args.dataset, args.attack, args.seed))
    write_cell(
        {
            "paradigm": layout.STANDALONE,
            "dataset": args.dataset,
            "attack": args.attack,
            "defense": "none",
            "seed": args.seed,
            "ca": final["ca"],
            "asr": final["asr"],
            "ra": final["ra"],
            "seconds": run.seconds,
            "epochs": len(run.curve),
            "rounds": run.rounds,
            "attacker_check": planted.rounds,
            "device": device.type,
        },
        layout.backdoored_metrics(args.dataset, args.attack, args.seed),
    )
    print(
        f"train {args.dataset}-{args.attack} seed {args.seed}: CA {final['ca']:.3f} ASR {final['asr']:.3f} "
        f"RA {final['ra']:.3f} after {len(run.curve)} epochs ({run.rounds} round(s)), in {run.seconds:.1f} s"
    )


if __name__ == "__main__":
    run_main(main)
