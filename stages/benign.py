"""benign@<dataset>-<seed>: what each post-training defense costs a model that has no backdoor.

Defense papers rarely report this "benign condition" (Abad et al., 2025). Each post-training defense
of grid.defenses (those that need only the defender's clean data: neither the poisoned training set
nor the trigger, so EP and the training-time defenses are left out) is applied to the seed's clean
reference after one round of the recipe's epochs (the recipe as written), from the same defender's
share, seed and settings as the defend stage uses on that seed's backdoored models. There is no
trigger, so the figures are CA, its change (after - before) and the defense's seconds.

Writes metrics/cells/standalone/<dataset>/seed<k>/benign.json. The defended models are not kept:
nothing downstream reads them."""

from functools import partial

import torch

from sequela import models
from sequela.datasets import splits
from sequela.defenses.apply import Defended, apply_defense
from sequela.defenses.registry import CLEAN_DATA_ONLY, DEFENSES, check_defenses
from sequela.metrics import clean_accuracy
from sequela.pipeline import layout
from sequela.pipeline.records import write_cell
from sequela.workers import run_units
from stage import open_stage, run_main

ROUNDS = 1  # the clean reference trained as the recipe says: one round of its epochs


def defend(cell: Defended, before: float, name: str) -> dict:
    """One defense on its own copy of the clean model: its figures and the CA it changed."""
    figures = apply_defense(name, DEFENSES[name].run, cell).figures
    figures["ca_change"] = figures["ca"] - before
    print(
        f"benign {cell.dataset}-{name} seed {cell.seed}: CA {before:.3f} -> {figures['ca']:.3f} "
        f"in {figures['seconds']:.1f} s",
        flush=True,
    )
    return figures


def main() -> None:
    stage = open_stage(__doc__, "dataset", "seed", recipe_of="dataset", seed=False)
    args, params, device, seed = stage.args, stage.params, stage.device, stage.args.seed
    check_defenses(stage.checker)
    settings = params["defense"]

    ds, _ = splits.load_prepared(layout.prepared(args.dataset))
    model, spec = models.load(layout.clean_model(args.dataset, seed, ROUNDS), device)
    test = ds.test.to(device)
    cell = Defended(
        backdoored=model,
        spec=spec,
        train=ds.train,
        poisoned=torch.empty(0, dtype=torch.long),  # no poisoned rows: the model never saw any
        attack=None,
        target=0,  # read by no post-training defense; the figures have no ASR
        poison_rate=0.0,
        recipe=stage.recipe,
        device=device,
        settings=settings,
        seed=seed,
        test=test,
        clean=ds.train.subset(splits.defender_rows(ds.train, settings["clean_fraction"], seed)),
        dataset=args.dataset,
    )
    before = clean_accuracy(model, test)
    names = [name for name in params["grid"]["defenses"] if name in CLEAN_DATA_ONLY]
    cells = dict(zip(names, run_units(partial(defend, cell, before), names, device)))
    write_cell(
        {
            "paradigm": layout.STANDALONE,
            "dataset": args.dataset,
            "seed": seed,
            "device": device.type,
            "rounds": ROUNDS,
            "none": {"ca": before},
            "defenses": cells,
        },
        layout.benign_metrics(args.dataset, seed),
    )


if __name__ == "__main__":
    run_main(main)
