"""poison@<dataset>-<attack>-<seed>: trigger tensors + poisoned indices, no image copies.

Only the trigger and the indices are stored; the poisoned images are made on the fly per batch. A
trigger built against a trained model (LF) is built against the attacker's own surrogate, trained
here on its held-out split (attacker.surrogate); this stage reads no model of the defender's."""

from sequela.attacks.registry import check_attack, plant, save_artefact
from sequela.datasets import splits
from sequela.pipeline import layout
from sequela.training import attacker
from sequela.training.classifier import model_spec
from stage import open_stage, run_main


def main() -> None:
    stage = open_stage(__doc__, "dataset", "attack", "seed", recipe_of="dataset")
    args, params = stage.args, stage.params
    check_attack(stage.checker, args.attack)
    ds, meta = splits.load_prepared(layout.prepared(args.dataset))
    target, rate = params["attack"]["target"], params["attack"]["poison_rate"]
    device, recipe = stage.device, stage.recipe
    spec = model_spec(recipe, ds.image_shape, ds.num_classes, meta["mean"], meta["std"])
    attack, indices = plant(
        args.attack,
        params["attack"][args.attack],
        ds.train.x,
        ds.train.y,
        target,
        rate,
        args.seed,
        device,
        lambda: attacker.surrogate(ds.shadow, spec, recipe, device, args.seed),
    )
    meta = {
        "dataset": args.dataset,
        "seed": args.seed,
        "target": target,
        "poison_rate": rate,
        "n_poison": len(indices),
        "n_train": len(ds.train),
    }
    save_artefact(attack, indices, meta, layout.poison(args.dataset, args.attack, args.seed))
    print(
        f"poison {args.dataset}-{args.attack} seed {args.seed}: {len(indices)} of {len(ds.train)} "
        f"training images, target {target}"
    )


if __name__ == "__main__":
    run_main(main)
