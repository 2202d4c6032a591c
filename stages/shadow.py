"""shadow@<dataset>-<seed>: the membership attacker's shadow model.

Same recipe as the target models, trained on the dataset's whole shadow split (as many images as
the target's training split); the `shadow_out` split is its non-members. Like the clean reference
it trains rounds of the recipe's epochs up to `attack.budget.max_rounds`, with a snapshot after each,
so that a target trained r rounds is attacked by a shadow trained r rounds. Writes
data/standalone/<dataset>/seed<k>/shadow/round<r>/ and its cell: per round, accuracy on its members
and non-members, the generalisation gap the attack MLP learns from."""

from sequela import models
from sequela.datasets import splits
from sequela.measures.shadow import train_shadow
from sequela.metrics import clean_accuracy
from sequela.pipeline import layout
from sequela.pipeline.records import write_cell
from sequela.training.classifier import model_spec
from stage import open_stage, run_main


def main() -> None:
    stage = open_stage(__doc__, "dataset", "seed", recipe_of="dataset")
    args, params = stage.args, stage.params
    recipe, device = stage.recipe, stage.device

    ds, meta = splits.load_prepared(layout.prepared(args.dataset))
    if ds.shadow is None or len(ds.shadow) < 2 or ds.shadow_out is None or len(ds.shadow_out) < 2:
        raise SystemExit(
            f"error: {layout.prepared(args.dataset)} has no shadow split; "
            "set data.shadow_fraction and data.holdout_fraction > 0"
        )
    stage.checker.integer("attack.budget.max_rounds")
    spec = model_spec(recipe, ds.image_shape, ds.num_classes, meta["mean"], meta["std"])
    snapshots = []

    def snapshot(model, rounds: int, seconds: float) -> None:
        models.save(model, spec, layout.shadow_model(args.dataset, args.seed, rounds))
        snapshots.append(
            {
                "rounds": rounds,
                "epochs": rounds * recipe.epochs,
                "seconds": seconds,
                "train_acc": clean_accuracy(model, ds.shadow.to(device)),
                "test_acc": clean_accuracy(model, ds.shadow_out.to(device)),
            }
        )

    run = train_shadow(
        ds.shadow,
        ds.shadow_out,
        spec,
        recipe,
        device,
        args.seed,
        params["curves"]["eval_n"],
        params["attack"]["budget"]["max_rounds"],
        snapshot,
    )
    write_cell(
        {
            "paradigm": layout.STANDALONE,
            "dataset": args.dataset,
            "seed": args.seed,
            "model": "shadow",
            "n_members": len(ds.shadow),
            "n_nonmembers": len(ds.shadow_out),
            "device": device.type,
            "by_rounds": snapshots,
        },
        layout.shadow_metrics(args.dataset, args.seed),
    )
    last = snapshots[-1]
    print(
        f"shadow {args.dataset} seed {args.seed}: member acc {last['train_acc']:.3f}, "
        f"non-member acc {last['test_acc']:.3f} after {last['epochs']} epochs, in {run.seconds:.1f} s"
    )


if __name__ == "__main__":
    run_main(main)
