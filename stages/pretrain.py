"""pretrain@<dataset>-<seed>: the encoder paradigm's clean encoder, SimCLR on the unlabelled
training split of <dataset>, or a seeded `encoder.simclr.max_images` of it (src/sequela/paradigms/simclr.py).
The encoder is `encoder.model` (an architecture and width), or the dataset's recipe model where that
is null; its `features` are the representation, its classification head is never trained here.

Writes data/encoder/<dataset>/seed<k>/clean-encoder/ and the pre-training loss per epoch."""

from sequela import models
from sequela.engine.device import prepare_model
from sequela.paradigms.simclr import Views, check, check_model, pretrain, pretraining_set
from sequela.pipeline import layout
from sequela.pipeline.records import write_cell
from sequela.sources import loaders
from sequela.training.classifier import model_spec
from stage import open_stage, run_main


def main() -> None:
    stage = open_stage(__doc__, "dataset", "seed", recipe_of="dataset", bf16=False)
    args, params, device = stage.args, stage.params, stage.device
    check(stage.checker)
    check_model(stage.checker)
    s, d = params["encoder"]["simclr"], params["data"]

    ds = loaders.load(args.dataset, d["root"], d["split_seed"], d["test_fraction"])
    mean, std = ds.channel_stats()  # of the whole training split: the encoder's fixed input normalisation
    # a seeded subset keeps CPU pre-training within minutes (MNIST has 60,000 images)
    images = pretraining_set(ds.train, s["max_images"], args.seed).x
    spec = model_spec(stage.recipe, ds.image_shape, ds.num_classes, mean, std)
    if params["encoder"]["model"] is not None:
        spec.update({"arch": params["encoder"]["model"]["arch"], "width": params["encoder"]["model"]["width"]})
    encoder = prepare_model(models.build_from_spec(spec), device)  # initialised from the seed set above
    views = Views(s["crop_min"], s["flip"], s["jitter"])
    losses, seconds = pretrain(
        encoder,
        images,
        views,
        s["epochs"],
        s["batch_size"],
        s["lr"],
        s["temperature"],
        s["proj_dim"],
        device,
        args.seed,
    )
    models.save(encoder, spec, layout.clean_encoder(args.dataset, args.seed))
    write_cell(
        {
            "paradigm": layout.ENCODER,
            "dataset": args.dataset,
            "seed": args.seed,
            "n_images": len(images),
            "loss_per_epoch": losses,
            "seconds": seconds,
            "device": device.type,
        },
        layout.pretrain_metrics(args.dataset, args.seed),
    )
    print(f"pretrain {args.dataset} seed {args.seed}: NT-Xent {losses[0]:.3f} -> {losses[-1]:.3f} in {seconds:.1f} s")


if __name__ == "__main__":
    run_main(main)
