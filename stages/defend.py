"""defend@<dataset>-<attack>-<defense>: the backdoored model after one defense.

Writes data/models/<dataset>-<attack>/<defense>/, the cell's figures under metrics/cells/ and the
per-epoch curve (epoch 0 = before the defense) under metrics/curves/defend/."""

import argparse
import time

import torch

import layout
from sequela import data, models
from sequela.attacks import load_artefact
from sequela.config import Recipe, load_params, run_stage
from sequela.defenses import DEFENSES, DefenseContext
from sequela.engine import pick_device, seed_everything
from sequela.metrics import evaluate
from sequela.records import CurveRecorder, write_cell, write_curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--attack", required=True)
    parser.add_argument("--defense", required=True)
    args = parser.parse_args()
    params = load_params()
    recipe = Recipe.from_params(params, args.dataset)
    device = pick_device(params["device"])
    seed_everything(params["seed"])
    settings = params["defense"]

    ds, _ = data.load_prepared(layout.prepared(args.dataset))
    attack, poisoned, poison_meta = load_artefact(layout.poison(args.dataset, args.attack), device)
    target = poison_meta["target"]
    model, spec = models.load(layout.model(args.dataset, args.attack), device)
    clean = ds.train.subset(data.clean_subset(len(ds.train), settings["clean_fraction"], params["seed"]))
    test = ds.test.to(device)
    recorder = CurveRecorder(lambda m: evaluate(m, test, attack, target))
    ctx = DefenseContext(
        model=model, clean=clean, train=ds.train, poisoned=poisoned, attack=attack, target=target,
        recipe=recipe, epochs=settings["epochs"], params=settings.get(args.defense) or {},
        common={"momentum": settings["momentum"], "weight_decay": settings["weight_decay"]},
        device=device, generator=torch.Generator().manual_seed(params["seed"]), recorder=recorder,
        spec=spec, poison_rate=poison_meta["poison_rate"], seed=params["seed"],
    )
    ctx.record(0, 0.0)

    # The cost is the defense's own wall time: the per-epoch evaluations for the curve are left out.
    eval_before, start = recorder.eval_seconds, time.perf_counter()
    extra = DEFENSES[args.defense](ctx)
    seconds = time.perf_counter() - start - (recorder.eval_seconds - eval_before)
    final = evaluate(ctx.model, test, attack, target)

    models.save(ctx.model, spec, layout.model(args.dataset, args.attack, args.defense))
    write_curve(recorder.rows, layout.defense_curve(args.dataset, args.attack, args.defense))
    write_cell({"paradigm": layout.PARADIGM, "dataset": args.dataset, "attack": args.attack, "defense": args.defense,
                "ca": final["ca"], "asr": final["asr"], "ra": final["ra"], "seconds": seconds,
                "epochs": settings["epochs"], "clean_fraction": settings["clean_fraction"],
                "n_clean": len(clean), "device": device.type, **extra},
               layout.cell_metrics(args.dataset, args.attack, args.defense))
    print(f"defend {args.dataset}-{args.attack}-{args.defense}: CA {final['ca']:.3f} ASR {final['asr']:.3f} "
          f"RA {final['ra']:.3f} in {seconds:.1f} s")


if __name__ == "__main__":
    run_stage(main)
