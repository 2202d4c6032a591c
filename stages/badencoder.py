"""badencoder@<pretrain>-<downstream>-<seed>: BadEncoder backdoors the clean SimCLR encoder of
<pretrain> for the downstream task <downstream> (src/sequela/paradigms/badencoder.py).

The attacker's unlabelled set is `encoder.badencoder.unlabelled_fraction` of the images the encoder was
pre-trained on (unlabelled); its reference inputs are `n_reference` downstream training images of the target class
`encoder.target`, drawn with the seed. Writes data/encoder/<pre>-to-<down>/seed<k>/badencoder/
(the encoder, and its trigger as a poison artefact whose indices are the reference rows) and the
attack's own figures: per-epoch losses and embedding similarities on the downstream test split."""

import time

import torch

from sequela import models
from sequela.attacks.registry import save_artefact
from sequela.datasets import splits
from sequela.paradigms import badencoder, downstream, simclr
from sequela.pipeline import layout
from sequela.pipeline.records import write_cell
from sequela.sources import loaders
from stage import open_stage, run_main


def main() -> None:
    stage = open_stage(__doc__, "pretrain", "downstream", "seed")
    args, params, device = stage.args, stage.params, stage.device
    badencoder.check(stage.checker)
    settings, d = params["encoder"], params["data"]
    b = settings["badencoder"]

    clean, spec = models.load(layout.clean_encoder(args.pretrain, args.seed), device)
    channels = spec["in_channels"]
    pre = loaders.load(args.pretrain, d["root"], d["split_seed"], d["test_fraction"])
    side = pre.image_shape[-1]
    pretrained_on = simclr.pretraining_set(pre.train, settings["simclr"]["max_images"], args.seed)
    _, unlabelled = splits.carve(pretrained_on, b["unlabelled_fraction"], args.seed)
    down = downstream.load_downstream(
        args.downstream, d["root"], d["split_seed"], d["test_fraction"], channels, side, settings["max_train"]
    )
    target = settings["target"]
    of_target = torch.nonzero(down.train.y == target).flatten()
    pick = torch.randperm(len(of_target), generator=torch.Generator().manual_seed(args.seed))[: b["n_reference"]]
    reference_rows = of_target[pick].sort().values
    references = down.train.x[reference_rows]
    stamp = badencoder.trigger(channels, side, b["size_at_32"]).to(device)

    start = time.perf_counter()
    sim = settings["simclr"]
    views = simclr.Views(sim["crop_min"], sim["flip"], sim["jitter"])  # the pre-training's augmentation
    model, history, lr, held_out = badencoder.backdoor(
        clean, unlabelled.x, references, stamp, views, b, device, args.seed
    )
    seconds = time.perf_counter() - start
    victims = down.test.subset(down.test.y != target).x.to(device)
    figures = {
        "before": badencoder.similarities(clean, clean, victims, references.to(device), stamp),
        "after": badencoder.similarities(model, clean, victims, references.to(device), stamp),
    }

    pair = layout.pair(args.pretrain, args.downstream)
    out = layout.backdoored_encoder(pair, args.seed)
    models.save(model, spec, out)
    save_artefact(
        stamp,
        reference_rows,
        {"target": target, "poison_rate": 0.0, "downstream": args.downstream, "trigger_size": stamp.params["size"]},
        out / "trigger",
    )
    write_cell(
        {
            "paradigm": layout.ENCODER,
            "dataset": pair,
            "attack": "badencoder",
            "seed": args.seed,
            "target": target,
            "n_unlabelled": len(unlabelled),
            "n_reference": len(reference_rows),
            "trigger_size": stamp.params["size"],
            "seconds": seconds,
            "epochs": len(history),
            "losses": history,
            "lr": lr,
            "held_out_by_lr": {str(k): v for k, v in held_out.items()},
            **figures,
        },
        layout.badencoder_attack_metrics(pair, args.seed),
    )
    print(
        f"badencoder {pair} seed {args.seed}: triggered-to-reference similarity "
        f"{figures['before']['triggered_to_reference']:.3f} -> {figures['after']['triggered_to_reference']:.3f}, "
        f"clean inputs kept {figures['after']['clean_kept']:.3f}, norm ratio {figures['after']['norm_ratio']:.2f}, "
        f"centred similarity {figures['after']['centred_triggered_to_reference']:.3f}; "
        f"{len(history)} epochs at lr {lr:g} (the lowest held-out loss of {len(held_out)} rates) in {seconds:.1f} s"
    )


if __name__ == "__main__":
    run_main(main)
