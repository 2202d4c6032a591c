"""pretrain@<dataset>-<seed>: the encoder paradigm's clean encoder, SimCLR on the unlabelled
training split of <dataset>, or a seeded `encoder.simclr.max_images` of it (src/sequela/simclr.py).
The encoder is the dataset's recipe model (its `features`); its classification head is never trained here.

Writes data/encoder/<dataset>/seed<k>/clean-encoder/ and the pre-training loss per epoch."""

import argparse

import layout
from sequela import data, models
from sequela.config import Recipe, load_params, run_stage
from sequela.engine import pick_device, prepare_model, seed_everything
from sequela.records import write_cell
from sequela.simclr import Views, pretrain, pretraining_set
from sequela.training import model_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args()
    params = load_params()
    s, d = params["encoder"]["simclr"], params["data"]
    device = pick_device(params["device"])
    seed_everything(args.seed)

    ds = data.load(args.dataset, d["root"], d["split_seed"], d["test_fraction"])
    mean, std = ds.channel_stats()  # of the whole training split: the encoder's fixed input normalisation
    # a seeded subset keeps CPU pre-training within minutes (MNIST has 60,000 images)
    images = pretraining_set(ds.train, s["max_images"], args.seed).x
    spec = model_spec(Recipe.from_params(params, args.dataset), ds.image_shape, ds.num_classes, mean, std)
    encoder = prepare_model(models.build(**spec), device)  # initialised from the seed set above
    views = Views(s["crop_min"], s["flip"], s["jitter"])
    losses, seconds = pretrain(encoder, images, views, s["epochs"], s["batch_size"], s["lr"], s["temperature"],
                               s["proj_dim"], device, args.seed)
    models.save(encoder, spec, layout.clean_encoder(args.dataset, args.seed))
    write_cell({"paradigm": layout.ENCODER, "dataset": args.dataset, "seed": args.seed, "n_images": len(images),
                "loss_per_epoch": losses, "seconds": seconds, "device": device.type},
               layout.pretrain_metrics(args.dataset, args.seed))
    print(f"pretrain {args.dataset} seed {args.seed}: NT-Xent {losses[0]:.3f} -> {losses[-1]:.3f} in {seconds:.1f} s")


if __name__ == "__main__":
    run_stage(main)
