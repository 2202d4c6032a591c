"""clean@<dataset>: the dataset's recipe trained without poison, the clean reference model.

LF optimises its trigger against it; the sequela measures compare against it. Writes
data/models/<dataset>-clean/ and metrics/cells/<dataset>-clean.json (its CA)."""

import argparse

import layout
from sequela import data, models
from sequela.config import Recipe, load_params, run_stage
from sequela.engine import pick_device, seed_everything
from sequela.metrics import clean_accuracy
from sequela.records import write_cell, write_curve
from sequela.training import model_spec, train_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    args = parser.parse_args()
    params = load_params()
    recipe = Recipe.from_params(params, args.dataset)
    device = pick_device(params["device"])
    seed_everything(params["seed"])

    ds, meta = data.load_prepared(layout.prepared(args.dataset))
    test = ds.test.to(device)
    spec = model_spec(recipe, ds.image_shape, ds.num_classes, meta["mean"], meta["std"])
    # No trigger belongs to a clean model, so its curve has CA only.
    run = train_classifier(ds.train, spec, recipe, device, params["seed"],
                           evaluate=lambda m: {"ca": clean_accuracy(m, test)},
                           desc=f"clean {args.dataset}")
    models.save(run.model, spec, layout.clean_model(args.dataset))
    write_curve(run.curve, layout.clean_curve(args.dataset))
    write_cell({"dataset": args.dataset, "ca": run.curve[-1]["ca"], "seconds": run.seconds,
                "epochs": recipe.epochs, "device": device.type}, layout.clean_metrics(args.dataset))
    print(f"clean {args.dataset}: CA {run.curve[-1]['ca']:.3f} in {run.seconds:.1f} s")


if __name__ == "__main__":
    run_stage(main)
