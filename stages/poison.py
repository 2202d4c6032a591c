"""poison@<dataset>-<attack>-<seed>: trigger tensors + poisoned indices, no image copies.

Only the trigger and the indices are stored; the poisoned images are made on the fly per batch."""

import argparse

import layout
from sequela import data, models
from sequela.attacks import plant, save_artefact
from sequela.config import load_params, run_stage
from sequela.engine import pick_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--attack", required=True)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args()
    params = load_params()
    ds, _ = data.load_prepared(layout.prepared(args.dataset))
    target, rate = params["attack"]["target"], params["attack"]["poison_rate"]
    device = pick_device(params["device"])
    attack, indices = plant(args.attack, params["attack"][args.attack], ds.train.x, ds.train.y, target, rate,
                            args.seed, device,
                            lambda: models.load(layout.clean_model(args.dataset, args.seed), device)[0])
    meta = {"dataset": args.dataset, "seed": args.seed, "target": target, "poison_rate": rate,
            "n_poison": len(indices), "n_train": len(ds.train)}
    save_artefact(attack, indices, meta, layout.poison(args.dataset, args.attack, args.seed))
    print(f"poison {args.dataset}-{args.attack} seed {args.seed}: {len(indices)} of {len(ds.train)} "
          f"training images, target {target}")


if __name__ == "__main__":
    run_stage(main)
