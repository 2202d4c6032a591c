"""sensitivity@<dataset>-<attack>-<seed>: FT and SFT under other defender settings.

The defender's batch size and SFT's cycle length decide how far fine-tuning moves the weights, and
no defender can tune them on ASR. So instead of hiding them in a default, this stage reruns FT and
SFT on the same backdoored model and clean subset at each batch size of `sensitivity.batch_sizes`
(SFT at its default cycle length) and SFT at each cycle length of `sensitivity.cycle_steps` (at
the default batch), and records the final CA and ASR. The report draws them with their spread over
seeds (reports/figures/sensitivity-<dataset>.png). Nothing here feeds back into a default. On a
CPU the points run side by side, each single-threaded (sequela/workers.py)."""

import argparse
import copy
from types import SimpleNamespace

import layout
from sequela import data, models
from sequela.attacks import load_artefact
from sequela.config import Recipe, load_params, run_stage
from sequela.defenses import DEFENSES, DefenseContext
from sequela.engine import pick_device, seed_everything
from sequela.metrics import evaluate
from sequela.records import CurveRecorder, write_cell
from sequela.workers import run_units

# The cell every point of the sweep reruns FT / SFT on, set once by main() before the workers fork.
CELL = SimpleNamespace()


def run_point(point: tuple[str, int, dict]) -> dict:
    """Final CA / ASR / RA of one defense at one (batch size, overrides) point."""
    name, batch_size, overrides = point
    c = CELL
    seed_everything(c.seed)
    ctx = DefenseContext.for_defender(
        c.settings, name, c.seed, overrides, batch_size, model=copy.deepcopy(c.backdoored), clean=c.clean,
        train=c.ds.train, poisoned=c.poisoned, attack=c.attack, target=c.target, recipe=c.recipe, device=c.device,
        recorder=CurveRecorder(lambda m: {}), spec=c.spec)
    DEFENSES[name](ctx)
    return evaluate(ctx.model, c.test, c.attack, c.target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--attack", required=True)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args()
    params = load_params()
    recipe = Recipe.from_params(params, args.dataset)
    device = pick_device(params["device"])
    settings, sweep, seed = params["defense"], params["sensitivity"], args.seed

    ds, _ = data.load_prepared(layout.prepared(args.dataset))
    attack, poisoned, poison_meta = load_artefact(layout.poison(args.dataset, args.attack, seed), device)
    backdoored, spec = models.load(layout.model(args.dataset, args.attack, seed), device)
    clean = ds.train.subset(data.clean_subset(len(ds.train), settings["clean_fraction"], seed))
    CELL.__dict__.update(seed=seed, settings=settings, recipe=recipe, device=device, ds=ds, attack=attack,
                         poisoned=poisoned, target=poison_meta["target"], backdoored=backdoored, spec=spec,
                         clean=clean, test=ds.test.to(device))
    default_batch = settings["batch_size"] or recipe.batch_size

    labels, points = [], []
    for batch in sweep["batch_sizes"]:
        for name in ("ft", "sft"):
            labels.append({"sweep": "batch_size", "value": batch, "defense": name})
            points.append((name, batch, {}))
    for cycle in sweep["cycle_steps"]:
        labels.append({"sweep": "cycle_steps", "value": cycle, "defense": "sft"})
        points.append(("sft", default_batch, {"cycle_steps": cycle}))
    rows = [{**label, **result} for label, result in zip(labels, run_units(run_point, points, device))]
    for row in rows:
        print(f"sensitivity {args.dataset}-{args.attack} seed {seed}: {row['defense']} {row['sweep']}={row['value']}: "
              f"CA {row['ca']:.3f} ASR {row['asr']:.3f}")
    write_cell({"paradigm": layout.PARADIGM, "dataset": args.dataset, "attack": args.attack, "seed": seed,
                "default_batch_size": default_batch, "default_cycle_steps": settings["sft"]["cycle_steps"],
                "n_clean": len(clean), "rows": rows}, layout.sensitivity_metrics(args.dataset, args.attack, seed))


if __name__ == "__main__":
    run_stage(main)
