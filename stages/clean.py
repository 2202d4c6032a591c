"""clean@<dataset>-<seed>: the dataset's recipe trained without poison, the clean reference model.

LF optimises its trigger against it; the sequela measures compare against it. Writes
data/standalone/<dataset>/seed<k>/clean/ and its cell (CA) and training curve."""

import argparse

import layout
from sequela import data, models
from sequela.config import Recipe, load_params, run_stage
from sequela.engine import pick_device, seed_everything, use_cpu_bf16
from sequela.metrics import clean_accuracy
from sequela.records import write_cell, write_curve
from sequela.training import model_spec, train_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args()
    params = load_params()
    recipe = Recipe.from_params(params, args.dataset)
    use_cpu_bf16(recipe.cpu_bf16)
    device = pick_device(params["device"])
    seed_everything(args.seed)

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
    run_stage(main)
