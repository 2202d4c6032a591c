"""Blended's floor on digits: how often a clean model sends blended non-target images to the target.

For each alpha, on the shadow split (the attacker's own held-out data; the test split is not read):
the clean reference model's target rate on triggered non-target images (the floor, with no
backdoor), and the shadow ASR of a model trained on the poisoned data with the train stage's code.
Also splits the floor by true class, to show which digits the pattern pushes to the target.

    uv run python benchmarks/blended_floor.py --alpha 0.05 0.1 0.2 --seeds 0 1 2   # needs dvc repro clean@digits-*
"""

import argparse

import torch

from sequela import models
from sequela.attacks.registry import ATTACKS, choose_poison_indices
from sequela.datasets import splits
from sequela.engine.loop import predict
from sequela.pipeline import layout
from sequela.pipeline.config import load_params
from sequela.training.classifier import model_spec, train_classifier
from sequela.training.recipe import Recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alpha", type=float, nargs="+", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--dataset", default="digits")
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = load_params()
    recipe = Recipe.from_params(params, args.dataset)
    ds, meta = splits.load_prepared(layout.prepared(args.dataset))
    target, rate = params["attack"]["target"], params["attack"]["poison_rate"]
    spec = model_spec(recipe, ds.image_shape, ds.num_classes, meta["mean"], meta["std"])
    victims = ds.shadow.subset(ds.shadow.y != target)
    for alpha in args.alpha:
        for seed in args.seeds:
            clean, _ = models.load(layout.clean_model(args.dataset, seed))
            generator = torch.Generator().manual_seed(seed)
            indices = choose_poison_indices(ds.train.y, target, rate, generator)
            attack = ATTACKS["blended"].create(
                {"alpha": alpha, "pattern_file": None}, ds.train.x, ds.train.y, target, generator
            )
            to_target = predict(clean, victims.x, transform=attack.apply) == target
            by_class = {int(c): round(to_target[victims.y == c].float().mean().item(), 2) for c in victims.y.unique()}
            run = train_classifier(
                ds.train,
                spec,
                recipe,
                torch.device("cpu"),
                seed,
                evaluate=lambda m: {},
                attack=attack,
                poisoned=indices,
                target=target,
                desc="blended",
            )
            asr = (predict(run.model, victims.x, transform=attack.apply) == target).float().mean().item()
            print(
                f"alpha {alpha} seed {seed}: clean-model floor {to_target.float().mean().item():.3f} "
                f"(by class {by_class}), backdoored shadow ASR {asr:.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
