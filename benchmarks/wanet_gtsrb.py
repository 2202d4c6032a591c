"""How strong must WaNet's warp be to plant on GTSRB in the CPU recipe's 6 epochs?

The attacker's own check, not the defender's: the backdoored model is trained as the train stage
trains it, and its attack success is measured on the shadow split (training-distribution images
the model never saw; the test split is not read). Prints one line per warp strength `s`.

    uv run python benchmarks/wanet_gtsrb.py --s 0.5 1.0      # needs `dvc repro prepare@gtsrb`
"""

import argparse
import time

import torch

from sequela.attacks.registry import ATTACKS, choose_poison_indices
from sequela.datasets import splits
from sequela.metrics import evaluate
from sequela.pipeline import layout
from sequela.pipeline.config import load_params
from sequela.training.classifier import model_spec, train_classifier
from sequela.training.recipe import Recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--s", type=float, nargs="+", required=True)
    parser.add_argument("--cross-ratio", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    params = load_params()
    torch.set_num_threads(2)
    recipe = Recipe.from_params(params, "gtsrb")
    ds, meta = splits.load_prepared(layout.prepared("gtsrb"))
    target, rate = params["attack"]["target"], params["attack"]["poison_rate"]
    spec = model_spec(recipe, ds.image_shape, ds.num_classes, meta["mean"], meta["std"])
    device = torch.device("cpu")
    for s in args.s:
        settings = {**params["attack"]["wanet"], "s": s}
        if args.cross_ratio is not None:
            settings["cross_ratio"] = args.cross_ratio
        generator = torch.Generator().manual_seed(args.seed)
        indices = choose_poison_indices(ds.train.y, target, rate, generator)
        attack = ATTACKS["wanet"].create(settings, ds.train.x, ds.train.y, target, generator)
        start = time.perf_counter()
        run = train_classifier(
            ds.train,
            spec,
            recipe,
            device,
            args.seed,
            evaluate=lambda m: {},
            attack=attack,
            poisoned=indices,
            target=target,
            desc=f"wanet s={s}",
        )
        held_out = evaluate(run.model, ds.shadow, attack, target)
        print(
            f"s={s} cross_ratio={settings['cross_ratio']}: shadow-split CA {held_out['ca']:.3f} "
            f"ASR {held_out['asr']:.3f} ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
