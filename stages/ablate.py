"""ablate@<dataset>-<seed>-<point>: one point of an ablation sweep, `<sweep>-<value>`, for every
attack of ablation.attacks.

The point is the main grid with one setting changed (src/sequela/sweeps.py). A defend-only sweep
reruns the sweep's defenses (FT and/or SFT) on the main grid's backdoored models with the defend
stage's code (sequela.defenses.apply); `poison_rate` and `victim_rounds` plant their own poison and
train their own backdoored model as the poison and train stages do (read beside the clean reference
trained as many rounds), then run the sweep's defenses on it.
Final CA, ASR and RA on the whole test split and each run's seconds; no models kept, no sequela.
Where the value is the main grid's own, the defenses the grid ran are read from its cells, not
computed again (the cell says which). The (attack, defense) runs go side by side on a CPU."""

from functools import partial

from sequela import sweep_point, sweeps
from sequela.datasets import splits
from sequela.defenses import finetune, fst, pam
from sequela.defenses.apply import Defended, apply_defense
from sequela.pipeline import layout
from sequela.pipeline.errors import ConfigError
from sequela.pipeline.records import write_cell
from sequela.workers import run_units
from stage import open_stage, run_main

RUNS = {**finetune.FINE_TUNING, "fst": fst.run, "pam": pam.run}  # every defense a sweep lists


def defend(cells: dict[str, Defended], unit: tuple[str, str]) -> dict:
    attack, name = unit
    return apply_defense(name, RUNS[name], cells[attack]).figures


def main() -> None:
    stage = open_stage(__doc__, "dataset", "seed", "point", recipe_of="dataset", seed=False)
    args, main_params = stage.args, stage.params
    sweeps.check(stage.checker)
    try:
        sweep, value = sweeps.parse_point(args.point)
    except ValueError as err:
        raise ConfigError(f"--point {args.point} is not allowed; allowed: {err}") from None
    params, attacks = sweeps.with_value(main_params, sweep, value), main_params["ablation"]["attacks"]
    shared = sweeps.from_main_grid(main_params, sweep, value, stage.recipe.batch_size)
    todo = [d for d in sweeps.SWEEPS[sweep].defenses if d not in shared]
    figures, cells = {attack: {} for attack in attacks}, {}
    if todo:
        ds, meta = splits.load_prepared(layout.prepared(args.dataset))
        settings = params["defense"]
        clean = ds.train.subset(splits.defender_rows(ds.train, settings["clean_fraction"], args.seed))
        common = dict(
            train=ds.train,
            recipe=stage.recipe,
            device=stage.device,
            settings=settings,
            seed=args.seed,
            test=ds.test.to(stage.device),
            clean=clean,
            dataset=args.dataset,
        )
        for attack in attacks:
            figures[attack], cells[attack] = sweep_point.attack_cell(ds, meta, params, args.point, attack, common)
        units = [(a, d) for a in attacks for d in todo if d not in ("none", "clean")]
        for (attack, name), f in zip(units, run_units(partial(defend, cells), units, stage.device)):
            figures[attack][name] = f
            print(
                f"ablate {args.dataset}-{attack} seed {args.seed} {args.point}: {name} CA {f['ca']:.3f} "
                f"ASR {f['asr']:.3f} in {f['seconds']:.1f} s"
            )
    if shared:
        print(
            f"ablate {args.dataset} seed {args.seed} {args.point}: the main grid's setting; "
            f"{', '.join(shared)} read from its cells, not computed again"
        )
    write_cell(
        {
            "paradigm": layout.STANDALONE,
            "dataset": args.dataset,
            "seed": args.seed,
            "sweep": sweep,
            "key": sweeps.SWEEPS[sweep].key,
            "value": value,
            "from_main_grid": shared,
            "attacks": {a: {"models": figures[a]} for a in attacks},
        },
        layout.ablation_metrics(args.dataset, args.seed, args.point),
    )


if __name__ == "__main__":
    run_main(main)
