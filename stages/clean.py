"""clean@<dataset>-<seed>: the dataset's recipe trained without poison, the clean reference model.

LF optimises its trigger against it; the sequela measures compare against it. Writes
data/standalone/<dataset>/seed<k>/clean/ and its cell (CA) and training curve."""

import layout
from opening import open_stage, run_main

from sequela import data, models
from sequela.metrics import clean_accuracy
from sequela.records import write_cell, write_curve
from sequela.training import model_spec, train_classifier


def main() -> None:
    stage = open_stage(__doc__, "dataset", "seed", recipe_of="dataset")
    args, params = stage.args, stage.params
    recipe, device = stage.recipe, stage.device

    ds, meta = data.load_prepared(layout.prepared(args.dataset))
    test = ds.test.to(device)
    curve_test = test.sample(params["curves"]["eval_n"], args.seed)
    spec = model_spec(recipe, ds.image_shape, ds.num_classes, meta["mean"], meta["std"])
    # No trigger belongs to a clean model, so its curve has CA only.
    run = train_classifier(ds.train, spec, recipe, device, args.seed,
                           evaluate=lambda m: {"ca": clean_accuracy(m, curve_test)},
                           desc=f"clean {args.dataset} seed {args.seed}")
    ca = clean_accuracy(run.model, test)
    models.save(run.model, spec, layout.clean_model(args.dataset, args.seed))
    write_curve(run.curve, layout.clean_curve(args.dataset, args.seed))
    write_cell({"dataset": args.dataset, "seed": args.seed, "ca": ca, "seconds": run.seconds,
                "epochs": recipe.epochs, "device": device.type}, layout.clean_metrics(args.dataset, args.seed))
    print(f"clean {args.dataset} seed {args.seed}: CA {ca:.3f} in {run.seconds:.1f} s")


if __name__ == "__main__":
    run_main(main)
