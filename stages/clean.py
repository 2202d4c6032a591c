"""clean@<dataset>-<seed>: the dataset's recipe trained without poison, the clean reference model.

It trains as a backdoored model trains (training/attacker.py): rounds of the recipe's epochs, each a warm
restart, up to `attack.budget.max_rounds`, with a snapshot after every round. A cell whose
backdoored model trained r rounds compares it with the snapshot after r rounds (its trigger's
floor, the re-injection and retuning baselines), so both trained the same epochs on the same
schedule. Writes data/standalone/<dataset>/seed<k>/clean/round<r>/, the cell (CA, epochs and
seconds per round) and the training curve."""

from sequela import models
from sequela.datasets import splits
from sequela.metrics import clean_accuracy
from sequela.pipeline import layout
from sequela.pipeline.records import write_cell, write_curve
from sequela.training.classifier import model_spec, train_classifier
from stage import open_stage, run_main


def main() -> None:
    stage = open_stage(__doc__, "dataset", "seed", recipe_of="dataset")
    args, params = stage.args, stage.params
    recipe, device = stage.recipe, stage.device
    stage.checker.integer("attack.budget.max_rounds")

    ds, meta = splits.load_prepared(layout.prepared(args.dataset))
    test = ds.test.to(device)
    curve_test = test.sample(params["curves"]["eval_n"], args.seed)
    spec = model_spec(recipe, ds.image_shape, ds.num_classes, meta["mean"], meta["std"])
    snapshots = []

    def snapshot(model, rounds: int, seconds: float) -> None:
        models.save(model, spec, layout.clean_model(args.dataset, args.seed, rounds))
        snapshots.append(
            {"rounds": rounds, "epochs": rounds * recipe.epochs, "ca": clean_accuracy(model, test), "seconds": seconds}
        )

    # No trigger belongs to a clean model, so its curve has CA only.
    run = train_classifier(
        ds.train,
        spec,
        recipe,
        device,
        args.seed,
        evaluate=lambda m: {"ca": clean_accuracy(m, curve_test)},
        desc=f"clean {args.dataset} seed {args.seed}",
        max_rounds=params["attack"]["budget"]["max_rounds"],
        after_round=snapshot,
    )
    write_curve(run.curve, layout.clean_curve(args.dataset, args.seed))
    write_cell(
        {"dataset": args.dataset, "seed": args.seed, "device": device.type, "by_rounds": snapshots},
        layout.clean_metrics(args.dataset, args.seed),
    )
    print(
        f"clean {args.dataset} seed {args.seed}: CA "
        + ", ".join(f"{s['ca']:.3f} after {s['epochs']} epochs" for s in snapshots)
        + f" in {run.seconds:.1f} s"
    )


if __name__ == "__main__":
    run_main(main)
