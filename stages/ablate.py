"""ablate@<dataset>-<attack>-<seed>-<point>: one point of an ablation sweep, `<sweep>-<value>`.

The point is the main grid with one setting changed (src/sequela/ablation.py). A defend-only sweep
reruns the sweep's defenses (FT and/or SFT) on the main grid's backdoored model, with the code the
defend stage runs (sequela.defenses.apply); `poison_rate` plants its own poison, trains its own
backdoored model with the dataset's recipe and runs FT and SFT on it. Final CA, ASR and RA on the
whole test split, and each run's own seconds. No models are kept and no sequela is measured here.

Where the value is the main grid's own, nothing is computed: the cell records which defenses the
report reads from the main grid's cells instead. The point's defenses run side by side on a CPU, each
single-threaded (sequela/workers.py)."""

import layout
from opening import open_stage, run_main

from sequela import ablation, data, models
from sequela.defenses.apply import Defended, apply_defense
from sequela.defenses.finetune import FINE_TUNING
from sequela.errors import ConfigError
from sequela.records import write_cell
from sequela.workers import run_units

# What the point's defenses read, set once by main() before the workers fork.
CELL: Defended | None = None


def defend(name: str) -> dict:
    return apply_defense(name, FINE_TUNING[name], CELL).figures


def backdoored_model(stage, params: dict, sweep: str, value) -> tuple[dict, tuple]:
    """The point's backdoored model, its poison and its own figures ("none", attacker sweeps only)."""
    from sequela.attacks.registry import load_artefact, plant
    from sequela.engine import seed_everything
    from sequela.metrics import evaluate
    from sequela.training import model_spec, train_classifier

    args, device, recipe = stage.args, stage.device, stage.recipe
    ds, meta = data.load_prepared(layout.prepared(args.dataset))
    if not ablation.SWEEPS[sweep].attacker:
        attack, poisoned, pm = load_artefact(layout.poison(args.dataset, args.attack, args.seed), device)
        backdoored, spec = models.load(layout.model(args.dataset, args.attack, args.seed), device)
        return {}, (ds, attack, poisoned, pm["target"], pm["poison_rate"], backdoored, spec)
    rate, target = params["attack"]["poison_rate"], params["attack"]["target"]
    attack, poisoned = plant(args.attack, params["attack"][args.attack], ds.train.x, ds.train.y, target, rate,
                             args.seed, device,
                             lambda: models.load(layout.clean_model(args.dataset, args.seed), device)[0])
    attack, poisoned = attack.to(device), poisoned.to(device)
    seed_everything(args.seed)
    spec = model_spec(recipe, ds.image_shape, ds.num_classes, meta["mean"], meta["std"])
    run = train_classifier(ds.train, spec, recipe, device, args.seed, evaluate=lambda m: {}, attack=attack,
                           poisoned=poisoned, target=target, desc=f"ablate {sweep}={value}")
    none = {**evaluate(run.model, ds.test.to(device), attack, target), "seconds": run.seconds,
            "epochs": recipe.epochs, "n_poison": len(poisoned)}
    return {"none": none}, (ds, attack, poisoned, target, rate, run.model, spec)


def main() -> None:
    global CELL
    stage = open_stage(__doc__, "dataset", "attack", "seed", "point", recipe_of="dataset", seed=False)
    args, main_params = stage.args, stage.params
    ablation.check(stage.checker)
    try:
        sweep, value = ablation.parse_point(args.point)
    except ValueError as err:
        raise ConfigError(f"--point {args.point} is not allowed; allowed: {err}") from None
    params = ablation.with_value(main_params, sweep, value)
    shared = ablation.from_main_grid(main_params, sweep, value, stage.recipe.batch_size)
    todo = [d for d in ablation.SWEEPS[sweep].defenses if d not in shared]
    figures = {}
    if todo:
        figures, (ds, attack, poisoned, target, rate, backdoored, spec) = backdoored_model(stage, params, sweep, value)
        settings = params["defense"]
        CELL = Defended(backdoored=backdoored, spec=spec, train=ds.train, poisoned=poisoned, attack=attack,
                        target=target, poison_rate=rate, recipe=stage.recipe, device=stage.device, settings=settings,
                        seed=args.seed, test=ds.test.to(stage.device),
                        clean=ds.train.subset(data.clean_subset(len(ds.train), settings["clean_fraction"], args.seed)))
        defenses = [n for n in todo if n != "none"]
        figures.update(zip(defenses, run_units(defend, defenses, stage.device)))
    for name, f in figures.items():
        print(f"ablate {args.dataset}-{args.attack} seed {args.seed} {args.point}: {name} "
              f"CA {f['ca']:.3f} ASR {f['asr']:.3f} in {f['seconds']:.1f} s")
    if shared:
        print(f"ablate {args.dataset}-{args.attack} seed {args.seed} {args.point}: the main grid's setting; "
              f"{', '.join(shared)} read from its cells, not computed again")
    write_cell({"paradigm": layout.STANDALONE, "dataset": args.dataset, "attack": args.attack, "seed": args.seed,
                "sweep": sweep, "key": ablation.SWEEPS[sweep].key, "value": value, "from_main_grid": shared,
                "models": figures}, layout.ablation_metrics(args.dataset, args.attack, args.seed, args.point))


if __name__ == "__main__":
    run_main(main)
