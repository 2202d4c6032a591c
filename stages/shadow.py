"""shadow@<dataset>-<seed>: the membership attacker's shadow model.

Same recipe as the target models, trained on the dataset's whole shadow split (as many images as
the target's training split); the `shadow_out` split is its non-members. Writes
data/standalone/<dataset>/seed<k>/shadow/ and its cell: accuracy on its members and non-members,
the generalisation gap the attack MLP learns from."""

import argparse

import layout
from sequela import data, models
from sequela.config import Recipe, load_params, run_stage
from sequela.engine import pick_device, seed_everything, use_cpu_bf16
from sequela.metrics import clean_accuracy
from sequela.records import write_cell
from sequela.sequela.shadow import train_shadow
from sequela.training import model_spec


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
    if ds.shadow is None or len(ds.shadow) < 2 or ds.shadow_out is None or len(ds.shadow_out) < 2:
        raise SystemExit(f"error: {layout.prepared(args.dataset)} has no shadow split; "
                         "set data.shadow_fraction and data.holdout_fraction > 0")
    spec = model_spec(recipe, ds.image_shape, ds.num_classes, meta["mean"], meta["std"])
    run = train_shadow(ds.shadow, ds.shadow_out, spec, recipe, device, args.seed, params["curves"]["eval_n"])
    models.save(run.model, spec, layout.shadow_model(args.dataset, args.seed))
    final = {"train_acc": clean_accuracy(run.model, ds.shadow.to(device)),
             "test_acc": clean_accuracy(run.model, ds.shadow_out.to(device))}
    write_cell({"paradigm": layout.STANDALONE, "dataset": args.dataset, "seed": args.seed, "model": "shadow",
                "n_members": len(ds.shadow), "n_nonmembers": len(ds.shadow_out),
                "train_acc": final["train_acc"], "test_acc": final["test_acc"], "seconds": run.seconds,
                "epochs": recipe.epochs, "device": device.type}, layout.shadow_metrics(args.dataset, args.seed))
    print(f"shadow {args.dataset} seed {args.seed}: member acc {final['train_acc']:.3f}, "
          f"non-member acc {final['test_acc']:.3f} in {run.seconds:.1f} s")


if __name__ == "__main__":
    run_stage(main)
