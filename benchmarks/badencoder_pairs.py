"""Does BadEncoder plant a backdoor that reaches the downstream classifier, for a given encoder?

The whole encoder paradigm in one process, outside DVC: SimCLR pre-training, BadEncoder (as
src/sequela/paradigms/badencoder.py trains it, params.yaml's `encoder.badencoder`), then the user's head on
the clean and on the backdoored encoder. Prints, per seed, the downstream CA and ASR of both (the
clean encoder's ASR is the trigger's floor) and the attack's diagnoses: the norm ratio
|f'(x + t)| / |f'(x)| and the triggered-to-reference cosine after the mean feature is removed.

    uv run python benchmarks/badencoder_pairs.py --pretrain digits --arch compact_cnn --width 32 --seeds 0 1 2
"""

import argparse
import time

import torch

from sequela import models
from sequela.datasets import splits
from sequela.paradigms import badencoder, downstream, simclr
from sequela.pipeline.config import load_params
from sequela.sources import loaders
from sequela.training.classifier import model_spec
from sequela.training.recipe import Recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrain", default="digits")
    parser.add_argument("--downstream", default="digits")
    parser.add_argument("--arch", default=None, help="default: the pre-training dataset's recipe model")
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--simclr-epochs", type=int, default=None)
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params()
    enc, d = params["encoder"], params["data"]
    sim, b = dict(enc["simclr"]), enc["badencoder"]
    if args.simclr_epochs:
        sim["epochs"] = args.simclr_epochs
    if args.max_images:
        sim["max_images"] = args.max_images
    device = torch.device("cpu")
    recipe = Recipe.from_params(params, args.pretrain)
    pre = loaders.load(args.pretrain, d["root"], d["split_seed"], d["test_fraction"])
    mean, std = pre.channel_stats()
    spec = model_spec(recipe, pre.image_shape, pre.num_classes, mean, std)
    spec.update(arch=args.arch or spec["arch"], width=args.width or spec["width"])
    side = pre.image_shape[-1]
    down = downstream.load_downstream(
        args.downstream, d["root"], d["split_seed"], d["test_fraction"], spec["in_channels"], side, enc["max_train"]
    )
    views = simclr.Views(sim["crop_min"], sim["flip"], sim["jitter"])
    stamp = badencoder.trigger(spec["in_channels"], side, b["size_at_32"])
    for seed in args.seeds:
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        clean = models.build_from_spec(spec)
        images = simclr.pretraining_set(pre.train, sim["max_images"], seed)
        simclr.pretrain(
            clean,
            images.x,
            views,
            sim["epochs"],
            sim["batch_size"],
            sim["lr"],
            sim["temperature"],
            sim["proj_dim"],
            device,
            seed,
        )
        t1 = time.perf_counter()
        _, unlabelled = splits.carve(images, b["unlabelled_fraction"], seed)
        of_target = torch.nonzero(down.train.y == enc["target"]).flatten()
        pick = torch.randperm(len(of_target), generator=torch.Generator().manual_seed(seed))[: b["n_reference"]]
        references = down.train.x[of_target[pick].sort().values]
        backdoored, history, _, _ = badencoder.backdoor(clean, unlabelled.x, references, stamp, views, b, device, seed)
        t2 = time.perf_counter()
        victims = down.test.subset(down.test.y != enc["target"]).x
        diag = {
            k: badencoder.similarities(m, clean, victims, references, stamp)
            for k, m in (("clean", clean), ("backdoored", backdoored))
        }
        cell = downstream.Cell(
            down,
            stamp,
            enc["target"],
            recipe,
            enc["head"],
            params["defense"],
            device,
            seed,
            params["curves"]["eval_n"],
            on_features=True,
        )
        heads = {k: downstream.baseline(cell, m, spec).figures for k, m in (("clean", clean), ("none", backdoored))}
        t3 = time.perf_counter()
        print(
            f"{args.pretrain}->{args.downstream} {spec['arch']} w{spec['width']} seed {seed}: "
            f"clean CA {heads['clean']['ca']:.3f} ASR {heads['clean']['asr']:.3f} | "
            f"none CA {heads['none']['ca']:.3f} ASR {heads['none']['asr']:.3f} | "
            f"L0 {history[-1]['l0']:.3f} after {len(history)} epochs | norm ratio "
            f"{diag['clean']['norm_ratio']:.2f}->{diag['backdoored']['norm_ratio']:.2f} | centred cos "
            f"{diag['clean']['centred_triggered_to_reference']:.3f}->"
            f"{diag['backdoored']['centred_triggered_to_reference']:.3f} | cos "
            f"{diag['backdoored']['triggered_to_reference']:.3f} | "
            f"simclr {t1 - t0:.0f} s, badencoder {t2 - t1:.0f} s, heads {t3 - t2:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
