"""ablate_<sweep>@<dataset>-<attack>-<seed>-<value>: one point of an ablation sweep.

The point is the main grid with one setting changed (src/sequela/ablation.py). A defend-only
sweep reruns the sweep's defenses (FT and/or SFT) on the main grid's backdoored model, exactly as
the defend stage runs them at that setting; `poison_rate` plants its own poison, trains its own
backdoored model with the dataset's recipe and runs FT and SFT on it. Final CA, ASR and RA on the
whole test split, and each run's own seconds. No models are kept and no sequela is measured here:
a point's cell is its figures.

Where `value` is the main grid's own value, nothing is computed: the cell records which defenses
the report reads from the main grid's cells instead. The defenses of a point run side by side on a
CPU, each single-threaded (sequela/workers.py)."""

import argparse
import copy
import time
from types import SimpleNamespace

import layout
from sequela import ablation
from sequela.config import ConfigError, Recipe, load_params, run_stage
from sequela.records import write_cell

# What the point's defenses read, set once by main() before the workers fork.
POINT = SimpleNamespace()


def defend(name: str) -> dict:
    """One defense at the point's settings, from its own copy of the backdoored model."""
    from sequela.defenses import DEFENSES, DefenseContext
    from sequela.engine import seed_everything
    from sequela.metrics import evaluate
    from sequela.records import CurveRecorder

    p = POINT
    seed_everything(p.seed)
    ctx = DefenseContext.for_defender(
        p.settings, name, p.seed, model=copy.deepcopy(p.backdoored), clean=p.clean, train=p.ds.train,
        poisoned=p.poisoned, attack=p.attack, target=p.target, recipe=p.recipe, device=p.device,
        recorder=CurveRecorder(lambda m: {}), spec=p.spec, poison_rate=p.poison_rate)
    start = time.perf_counter()
    DEFENSES[name](ctx)
    seconds = time.perf_counter() - start
    final = evaluate(ctx.model, p.test, p.attack, p.target)
    return {**final, "seconds": seconds, "n_clean": len(p.clean), "batch_size": ctx.defender_batch,
            "epochs": p.settings["epochs"]}


def compute(args, params: dict, recipe: Recipe, names: list[str]) -> dict:
    """The figures of `names` (defenses, and "none" for an attacker sweep) at the point."""
    from sequela import data, models
    from sequela.attacks import load_artefact, plant
    from sequela.engine import pick_device, seed_everything, use_cpu_bf16
    from sequela.metrics import evaluate
    from sequela.training import model_spec, train_classifier
    from sequela.workers import run_units

    device = pick_device(params["device"])
    use_cpu_bf16(recipe.cpu_bf16)
    settings, seed = params["defense"], args.seed
    ds, meta = data.load_prepared(layout.prepared(args.dataset))
    test = ds.test.to(device)
    figures = {}
    if ablation.SWEEPS[args.sweep].attacker:
        rate, target = params["attack"]["poison_rate"], params["attack"]["target"]
        attack, poisoned = plant(args.attack, params["attack"][args.attack], ds.train.x, ds.train.y, target, rate,
                                 seed, device, lambda: models.load(layout.clean_model(args.dataset, seed), device)[0])
        attack, poisoned = attack.to(device), poisoned.to(device)
        seed_everything(seed)
        spec = model_spec(recipe, ds.image_shape, ds.num_classes, meta["mean"], meta["std"])
        run = train_classifier(ds.train, spec, recipe, device, seed, evaluate=lambda m: {}, attack=attack,
                               poisoned=poisoned, target=target, desc=f"ablate {args.sweep}={args.value}")
        backdoored = run.model
        if "none" in names:
            figures["none"] = {**evaluate(backdoored, test, attack, target), "seconds": run.seconds,
                               "epochs": recipe.epochs, "n_poison": len(poisoned)}
    else:
        attack, poisoned, poison_meta = load_artefact(layout.poison(args.dataset, args.attack, seed), device)
        target, rate = poison_meta["target"], poison_meta["poison_rate"]
        backdoored, spec = models.load(layout.model(args.dataset, args.attack, seed), device)
    POINT.__dict__.update(
        seed=seed, settings=settings, recipe=recipe, device=device, ds=ds, attack=attack, poisoned=poisoned,
        target=target, poison_rate=rate, backdoored=backdoored, spec=spec, test=test,
        clean=ds.train.subset(data.clean_subset(len(ds.train), settings["clean_fraction"], seed)))
    defenses = [n for n in names if n != "none"]
    figures.update(zip(defenses, run_units(defend, defenses, device)))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sweep", required=True, choices=sorted(ablation.SWEEPS))
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--attack", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--value", required=True, help="as DVC writes ${item.value}")
    args = parser.parse_args()
    main_params = load_params()
    try:
        value = ablation.parse_value(args.sweep, args.value)
    except ValueError:
        kind = "an integer" if ablation.SWEEPS[args.sweep].integer else "a number"
        raise ConfigError(f"ablation.{args.sweep}: {args.value!r} is not allowed; expected {kind}") from None
    params = ablation.with_value(main_params, args.sweep, value)
    recipe = Recipe.from_params(params, args.dataset)
    sweep = ablation.SWEEPS[args.sweep]
    shared = ablation.from_main_grid(main_params, args.sweep, value, recipe.batch_size)
    todo = [d for d in sweep.defenses if d not in shared]
    figures = compute(args, params, recipe, todo) if todo else {}
    for name, f in figures.items():
        print(f"ablate {args.dataset}-{args.attack} seed {args.seed} {args.sweep}={args.value}: {name} "
              f"CA {f['ca']:.3f} ASR {f['asr']:.3f} in {f['seconds']:.1f} s")
    if shared:
        print(f"ablate {args.dataset}-{args.attack} seed {args.seed} {args.sweep}={args.value}: the main grid's "
              f"setting; {', '.join(shared)} read from its cells, not computed again")
    write_cell({"paradigm": layout.STANDALONE, "dataset": args.dataset, "attack": args.attack, "seed": args.seed,
                "sweep": args.sweep, "key": sweep.key, "value": value, "from_main_grid": shared,
                "models": figures},
               layout.ablation_metrics(args.dataset, args.attack, args.seed, args.sweep, args.value))


if __name__ == "__main__":
    run_stage(main)
