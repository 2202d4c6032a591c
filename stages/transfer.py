"""transfer@<upstream>-<downstream>-<attack>-<seed>: the transfer-based paradigm's cell.

The attacker ships the standalone paradigm's backdoored classifier of the upstream dataset
(train@<upstream>-<attack>-<seed>). The user fits its downstream data to that model's input, trains
a new head on the frozen backbone ("none"), and may fine-tune the whole model on the same data (FT,
SFT); "clean" is the same head trained on the upstream clean reference model (trained as many rounds
as the shipped one), the trigger's floor without a backdoor (src/sequela/paradigms/downstream.py). ASR counts
triggered non-target downstream test images classified as the downstream target: the class of the
upstream target's name where the two label spaces share it, else `transfer.target`. Each model's
sequela (membership, re-injection, PGD accuracy on the downstream task;
src/sequela/measures/reused.py) is measured here, while the models are in memory, rather than in a
stage of its own.

Writes data/transfer/<up>-to-<down>/seed<k>/<attack>/<model>/, the cell's figures and curves."""

from sequela import models
from sequela.attacks.registry import load_artefact
from sequela.measures import reused
from sequela.paradigms import downstream
from sequela.pipeline import layout
from sequela.pipeline.io import read_json
from sequela.pipeline.records import write_cell
from stage import open_stage, run_main


def main() -> None:
    stage = open_stage(
        __doc__, "upstream", "downstream", "attack", "seed", recipe_of="upstream", bf16=False, seed=False
    )
    args, params, device = stage.args, stage.params, stage.device
    downstream.check_transfer(stage.checker)
    reused.check(stage.checker)
    settings, data_settings = params["transfer"], params["data"]
    up, seed = args.upstream, args.seed

    upstream_meta = read_json(layout.prepared(up) / "meta.json")
    channels, side, _ = upstream_meta["image_shape"]
    trigger, _, poison_meta = load_artefact(layout.poison(up, args.attack, seed), device)
    ds = downstream.load_downstream(
        args.downstream,
        data_settings["root"],
        data_settings["split_seed"],
        data_settings["test_fraction"],
        channels,
        side,
        settings["max_train"],
    )
    target, rule = downstream.downstream_target(
        upstream_meta["classes"], poison_meta["target"], ds.classes, settings["target"]
    )
    cell = downstream.Cell(
        ds, trigger, target, stage.recipe, settings["head"], params["defense"], device, seed, params["curves"]["eval_n"]
    )
    results = downstream.run(
        cell,
        models.load(layout.model(up, args.attack, seed), device),
        models.load(layout.model(up, args.attack, seed, "clean"), device),
    )
    reused.measure_all(results, cell, params["sequela"])

    pair = layout.pair(up, args.downstream)
    downstream.save(
        results, layout.transfer_models(pair, args.attack, seed), layout.transfer_curves(pair, args.attack, seed)
    )
    write_cell(
        {
            "paradigm": layout.TRANSFER,
            "dataset": pair,
            "attack": args.attack,
            "seed": seed,
            "target": target,
            "target_rule": rule,
            "device": device.type,
            "models": {name: r.figures for name, r in results.items()},
        },
        layout.transfer_metrics(pair, args.attack, seed),
    )
    for name, r in results.items():
        print(
            f"transfer {pair}-{args.attack} seed {seed} {name}: CA {r.figures['ca']:.3f} "
            f"ASR {r.figures['asr']:.3f} in {r.figures['seconds']:.1f} s; "
            f"re-injection ASR {r.figures['reinject_asr']:.3f}, "
            f"MIA loss AUC {r.figures['mia_loss_auc']:.3f}, PGD acc {r.figures['pgd_acc']:.3f}"
        )


if __name__ == "__main__":
    run_main(main)
