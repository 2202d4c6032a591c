"""ablate@<dataset>-<seed>-<point>: one point of an ablation sweep, `<sweep>-<value>`, for every
attack of ablation.attacks.

The point is the main grid with one setting changed (src/sequela/ablation.py). A defend-only sweep
reruns the sweep's defenses (FT and/or SFT) on the main grid's backdoored models with the defend
stage's code (sequela.defenses.apply); `poison_rate` plants its own poison and trains its own
backdoored model as the poison and train stages do, then runs FT, SFT and FST on it.
Final CA, ASR and RA on the whole test split and each run's seconds; no models kept, no sequela.
Where the value is the main grid's own, the defenses the grid ran are read from its cells, not
computed again (the cell says which). The (attack, defense) runs go side by side on a CPU."""

import layout
from opening import open_stage, run_main

from sequela import ablation, data, models
from sequela.defenses.apply import Defended, apply_defense
from sequela.defenses import finetune, fst, pam
from sequela.errors import ConfigError
from sequela.records import write_cell
from sequela.workers import run_units

# Each attack's backdoored model and data, set by main() before the workers fork.
CELLS: dict[str, Defended] = {}
RUNS = {**finetune.FINE_TUNING, "fst": fst.run, "pam": pam.run}  # every defense a sweep lists


def defend(unit: tuple[str, str]) -> dict:
    attack, name = unit
    return apply_defense(name, RUNS[name], CELLS[attack]).figures


def backdoored_model(stage, ds, meta, params: dict, sweep: str, attack: str) -> tuple[dict, tuple]:
    """The point's backdoored model of `attack`, its poison and its own figures ("none", attacker
    sweeps only)."""
    from sequela.attacks.registry import load_artefact, plant
    from sequela.engine import seed_everything
    from sequela.metrics import evaluate
    from sequela.planting import PlantingCheck, surrogate, train_backdoored
    from sequela.training import model_spec

    args, device, recipe = stage.args, stage.device, stage.recipe
    if not ablation.SWEEPS[sweep].attacker:
        trigger, poisoned, pm = load_artefact(layout.poison(args.dataset, attack, args.seed), device)
        backdoored, spec = models.load(layout.model(args.dataset, attack, args.seed), device)
        return {}, (trigger, poisoned, pm["target"], pm["poison_rate"], backdoored, spec)
    rate, target = params["attack"]["poison_rate"], params["attack"]["target"]
    seed_everything(args.seed)  # the same start for every attack, whichever ran before it in this cell
    spec = model_spec(recipe, ds.image_shape, ds.num_classes, meta["mean"], meta["std"])
    trigger, poisoned = plant(attack, params["attack"][attack], ds.train.x, ds.train.y, target, rate, args.seed,
                              device, lambda: surrogate(ds.shadow, spec, recipe, device, args.seed))
    trigger, poisoned = trigger.to(device), poisoned.to(device)
    seed_everything(args.seed)
    rule = params["attack"]["budget"]
    planted = PlantingCheck(ds.shadow.to(device), trigger, target, rule["min_asr"][attack])
    run = train_backdoored(ds.train, spec, recipe, device, args.seed, params["attack"][attack], trigger, poisoned,
                           target, planted, rule["max_rounds"], evaluate=lambda m: {},
                           desc=f"ablate {attack} {args.point}")
    none = {**evaluate(run.model, ds.test.to(device), trigger, target), "seconds": run.seconds,
            "epochs": recipe.epochs * run.rounds, "rounds": run.rounds, "n_poison": len(poisoned)}
    return {"none": none}, (trigger, poisoned, target, rate, run.model, spec)


def main() -> None:
    stage = open_stage(__doc__, "dataset", "seed", "point", recipe_of="dataset", seed=False)
    args, main_params = stage.args, stage.params
    ablation.check(stage.checker)
    try:
        sweep, value = ablation.parse_point(args.point)
    except ValueError as err:
        raise ConfigError(f"--point {args.point} is not allowed; allowed: {err}") from None
    params, attacks = ablation.with_value(main_params, sweep, value), main_params["ablation"]["attacks"]
    shared = ablation.from_main_grid(main_params, sweep, value, stage.recipe.batch_size)
    todo = [d for d in ablation.SWEEPS[sweep].defenses if d not in shared]
    figures = {attack: {} for attack in attacks}
    if todo:
        ds, meta = data.load_prepared(layout.prepared(args.dataset))
        settings, test = params["defense"], ds.test.to(stage.device)
        clean = ds.train.subset(data.defender_rows(ds.train, settings["clean_fraction"], args.seed))
        for attack in attacks:
            figures[attack], (trigger, poisoned, target, rate, model, spec) = backdoored_model(
                stage, ds, meta, params, sweep, attack)
            CELLS[attack] = Defended(backdoored=model, spec=spec, train=ds.train, poisoned=poisoned, attack=trigger,
                                     target=target, poison_rate=rate, recipe=stage.recipe, device=stage.device,
                                     settings=settings, seed=args.seed, test=test, clean=clean, dataset=args.dataset)
        units = [(a, d) for a in attacks for d in todo if d != "none"]
        for (attack, name), f in zip(units, run_units(defend, units, stage.device)):
            figures[attack][name] = f
            print(f"ablate {args.dataset}-{attack} seed {args.seed} {args.point}: {name} CA {f['ca']:.3f} "
                  f"ASR {f['asr']:.3f} in {f['seconds']:.1f} s")
    if shared:
        print(f"ablate {args.dataset} seed {args.seed} {args.point}: the main grid's setting; "
              f"{', '.join(shared)} read from its cells, not computed again")
    write_cell({"paradigm": layout.STANDALONE, "dataset": args.dataset, "seed": args.seed, "sweep": sweep,
                "key": ablation.SWEEPS[sweep].key, "value": value, "from_main_grid": shared,
                "attacks": {a: {"models": figures[a]} for a in attacks}},
               layout.ablation_metrics(args.dataset, args.seed, args.point))


if __name__ == "__main__":
    run_main(main)
