"""shadow@<dataset>: the membership attacker's shadow model, trained once per dataset.

Same recipe as the target models, trained on a seeded half of the dataset's shadow split; the other
half are its non-members. Writes data/models/<dataset>-shadow/ (weights, spec, and
members.safetensors: which shadow-split indices it trained on) and metrics/cells/<dataset>-shadow.json
(its train / held-out accuracy, the generalisation gap the attack MLP learns from)."""

import argparse

import layout
from sequela import data, models
from sequela.config import Recipe, load_params, run_stage
from sequela.engine import pick_device, seed_everything
from sequela.io import save_tensors
from sequela.records import write_cell
from sequela.sequela.shadow import train_shadow
from sequela.training import model_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    args = parser.parse_args()
    params = load_params()
    recipe = Recipe.from_params(params, args.dataset)
    device = pick_device(params["device"])
    seed_everything(params["seed"])

    ds, meta = data.load_prepared(layout.prepared(args.dataset))
    if ds.shadow is None or len(ds.shadow) < 4:
        raise SystemExit(f"error: {layout.prepared(args.dataset)} has no shadow split; set data.shadow_fraction > 0")
    spec = model_spec(recipe, ds.image_shape, ds.num_classes, meta["mean"], meta["std"])
    run, members = train_shadow(ds.shadow, spec, recipe, device, params["seed"])

    out = layout.shadow_model(args.dataset)
    save_tensors({"members": members}, out / "members.safetensors")
    models.save(run.model, spec, out)
    final = run.curve[-1]
    write_cell({"paradigm": layout.PARADIGM, "dataset": args.dataset, "model": "shadow",
                "n_members": len(members), "n_nonmembers": len(ds.shadow) - len(members),
                "train_acc": final["train_acc"], "test_acc": final["test_acc"], "seconds": run.seconds,
                "epochs": recipe.epochs, "device": device.type}, layout.shadow_metrics(args.dataset))
    print(f"shadow {args.dataset}: train acc {final['train_acc']:.3f}, held-out acc {final['test_acc']:.3f} "
          f"in {run.seconds:.1f} s")


if __name__ == "__main__":
    run_stage(main)
