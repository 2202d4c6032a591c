"""train@<dataset>-<attack>: the backdoored model, trained on the poisoned training set.

Writes data/models/<dataset>-<attack>/none/ (weights + spec), the "none" cell's figures under
metrics/cells/, and the training curve under metrics/curves/train/."""

import argparse

import torch

import layout
from sequela import data, models
from sequela.attacks import load_artefact
from sequela.config import Recipe, load_params, run_stage
from sequela.engine import Augment, BatchStream, fit, pick_device, prepare_model, seed_everything, sgd
from sequela.metrics import evaluate
from sequela.records import CurveRecorder, write_cell, write_curve
from sequela.schedules import cosine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--attack", required=True)
    args = parser.parse_args()
    params = load_params()
    recipe = Recipe.from_params(params, args.dataset)
    device = pick_device(params["device"])
    seed_everything(params["seed"])

    ds, meta = data.load_prepared(layout.prepared(args.dataset))
    attack, poisoned, poison_meta = load_artefact(layout.poison(args.dataset, args.attack), device)
    target = poison_meta["target"]
    spec = {"arch": recipe.model, "in_channels": ds.image_shape[0], "num_classes": ds.num_classes,
            "mean": meta["mean"], "std": meta["std"], "width": recipe.width}
    model = prepare_model(models.build(**spec), device)

    generator = torch.Generator().manual_seed(params["seed"])
    stream = BatchStream(ds.train.x, ds.train.y, recipe.batch_size, device, generator,
                         augment=Augment(recipe.crop_padding, recipe.flip),
                         attack=attack, poisoned=poisoned, target=target)
    optimizer = sgd(model, recipe.lr, recipe.momentum, recipe.weight_decay)
    schedule = cosine(recipe.lr, recipe.epochs * len(stream))
    test = ds.test.to(device)
    recorder = CurveRecorder(lambda m: evaluate(m, test, attack, target))
    seconds = fit(model, stream, optimizer, schedule, recipe.epochs,
                  on_epoch=lambda epoch, lr: recorder.record(model, epoch, lr), desc=f"train {args.dataset}-{args.attack}")

    final = recorder.rows[-1]
    models.save(model, spec, layout.model(args.dataset, args.attack))
    write_curve(recorder.rows, layout.train_curve(args.dataset, args.attack))
    write_cell({"paradigm": layout.PARADIGM, "dataset": args.dataset, "attack": args.attack, "defense": "none",
                "ca": final["ca"], "asr": final["asr"], "ra": final["ra"],
                "seconds": seconds - recorder.eval_seconds, "epochs": recipe.epochs, "device": device.type},
               layout.cell_metrics(args.dataset, args.attack, "none"))
    print(f"train {args.dataset}-{args.attack}: CA {final['ca']:.3f} ASR {final['asr']:.3f} RA {final['ra']:.3f} "
          f"in {seconds - recorder.eval_seconds:.1f} s")


if __name__ == "__main__":
    run_stage(main)
