"""defend@<dataset>-<attack>-<seed>: the backdoored model after each defense of grid.defenses.

One process runs every defense of the cell: on digits a stage's start-up (imports) costs more than
most defenses, and every defense reads the same backdoored model, data and poison artefact. Each
defense starts from its own copy of the backdoored model and its own seeded generator, so its
result does not depend on which other defenses are in the grid or in what order they run.

The defender's view: its clean subset (`defense.clean_fraction` of the clean training split, drawn
with the seed) and, for the training-time defenses, the poisoned training set as shipped. The test
split is only read to record the per-epoch curve, in eval mode: no defense's training touches it.

Per defense, writes data/standalone/<dataset>/seed<k>/<attack>/<defense>/ (weights + spec, and
removed.safetensors for a defense that drops training rows: they are not members of its model),
the cell's figures and the per-epoch curve (epoch 0 = before the defense). On a CPU the defenses run
side by side, each single-threaded (sequela/workers.py)."""

import argparse
import copy
import time
from types import SimpleNamespace

import layout
from sequela import data, models
from sequela.attacks import load_artefact
from sequela.config import Recipe, load_params, run_stage
from sequela.defenses import DEFENSES, DefenseContext
from sequela.engine import pick_device, seed_everything, use_cpu_bf16
from sequela.io import save_tensors
from sequela.metrics import evaluate
from sequela.records import CurveRecorder, write_cell, write_curve
from sequela.workers import run_units

# What every defense of the cell reads, set once by main() before the workers fork.
CELL = SimpleNamespace()


def defend(name: str) -> dict:
    """Run one defense on its own copy of the backdoored model; save the model and its curve."""
    c = CELL
    seed_everything(c.seed)
    recorder = CurveRecorder(lambda m: evaluate(m, c.curve_test, c.attack, c.target))
    ctx = DefenseContext.for_defender(
        c.settings, name, c.seed, model=copy.deepcopy(c.backdoored), clean=c.clean, train=c.ds.train,
        poisoned=c.poisoned, attack=c.attack, target=c.target, recipe=c.recipe, device=c.device, recorder=recorder,
        spec=c.spec, poison_rate=c.poison_rate)
    ctx.record(0, 0.0)
    # The cost is the defense's own wall time: the per-epoch evaluations for the curve are left out.
    eval_before, start = recorder.eval_seconds, time.perf_counter()
    extra = DEFENSES[name](ctx)
    seconds = time.perf_counter() - start - (recorder.eval_seconds - eval_before)
    final = evaluate(ctx.model, c.test, c.attack, c.target)

    out = layout.model(c.dataset, c.attack_name, c.seed, name)
    removed = extra.pop("removed_rows", None)
    if removed is not None:
        save_tensors({"removed": removed}, out / "removed.safetensors")
    models.save(ctx.model, c.spec, out)
    write_curve(recorder.rows, layout.defense_curve(c.dataset, c.attack_name, c.seed, name))
    print(f"defend {c.dataset}-{c.attack_name}-{name} seed {c.seed}: CA {final['ca']:.3f} "
          f"ASR {final['asr']:.3f} RA {final['ra']:.3f} in {seconds:.1f} s", flush=True)
    return {"ca": final["ca"], "asr": final["asr"], "ra": final["ra"], "seconds": seconds,
            "epochs": extra.pop("epochs_trained", c.settings["epochs"]),
            "clean_fraction": c.settings["clean_fraction"], "n_clean": len(c.clean),
            "batch_size": ctx.defender_batch, **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--attack", required=True)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args()
    params = load_params()
    recipe = Recipe.from_params(params, args.dataset)
    use_cpu_bf16(recipe.cpu_bf16)
    device = pick_device(params["device"])
    settings, seed = params["defense"], args.seed

    ds, _ = data.load_prepared(layout.prepared(args.dataset))
    attack, poisoned, poison_meta = load_artefact(layout.poison(args.dataset, args.attack, seed), device)
    backdoored, spec = models.load(layout.model(args.dataset, args.attack, seed), device)
    CELL.__dict__.update(
        dataset=args.dataset, attack_name=args.attack, seed=seed, settings=settings, recipe=recipe, device=device,
        ds=ds, attack=attack, poisoned=poisoned, target=poison_meta["target"], poison_rate=poison_meta["poison_rate"],
        backdoored=backdoored, spec=spec, test=ds.test.to(device),
        curve_test=ds.test.sample(params["curves"]["eval_n"], seed).to(device),
        clean=ds.train.subset(data.clean_subset(len(ds.train), settings["clean_fraction"], seed)))

    names = params["grid"]["defenses"]
    cells = dict(zip(names, run_units(defend, names, device)))
    write_cell({"paradigm": layout.STANDALONE, "dataset": args.dataset, "attack": args.attack, "seed": seed,
                "device": device.type, "defenses": cells}, layout.defense_metrics(args.dataset, args.attack, seed))


if __name__ == "__main__":
    run_stage(main)
