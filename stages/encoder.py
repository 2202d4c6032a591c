"""encoder@<pretrain>-<downstream>-<seed>: the encoder paradigm's downstream cell.

The user trains a classifier (an MLP head, `encoder.head`) on the frozen backdoored encoder with
its clean downstream data ("none"), and may fine-tune encoder + head on the same data (FT, SFT);
"clean" is the same head on the clean SimCLR encoder. ASR counts triggered non-target downstream
test images classified as `encoder.target` (src/sequela/paradigms/downstream.py). Each model's sequela is
measured here as in the transfer cell (src/sequela/measures/reused.py).

Writes data/encoder/<pre>-to-<down>/seed<k>/downstream/<model>/, the cell's figures and curves."""

from sequela import models
from sequela.attacks.registry import load_artefact
from sequela.measures import reused
from sequela.paradigms import downstream
from sequela.pipeline import layout
from sequela.pipeline.records import write_cell
from stage import open_stage, run_main


def main() -> None:
    stage = open_stage(__doc__, "pretrain", "downstream", "seed", recipe_of="pretrain", bf16=False, seed=False)
    args, params, device = stage.args, stage.params, stage.device
    downstream.check_encoder(stage.checker)
    reused.check(stage.checker)
    settings, d = params["encoder"], params["data"]
    pair, seed = layout.pair(args.pretrain, args.downstream), args.seed

    shipped = models.load(layout.backdoored_encoder(pair, seed), device)
    clean = models.load(layout.clean_encoder(args.pretrain, seed), device)
    trigger, _, meta = load_artefact(layout.backdoored_encoder(pair, seed) / "trigger", device)
    channels = shipped[1]["in_channels"]
    side = trigger.tensors["mask"].shape[-1]
    ds = downstream.load_downstream(
        args.downstream, d["root"], d["split_seed"], d["test_fraction"], channels, side, settings["max_train"]
    )
    cell = downstream.Cell(
        ds,
        trigger,
        meta["target"],
        stage.recipe,
        settings["head"],
        params["defense"],
        device,
        seed,
        params["curves"]["eval_n"],
        on_features=True,
    )
    results = downstream.run(cell, shipped, clean)
    reused.measure_all(results, cell, params["sequela"])

    downstream.save(results, layout.encoder_models(pair, seed), layout.encoder_curves(pair, seed))
    write_cell(
        {
            "paradigm": layout.ENCODER,
            "dataset": pair,
            "attack": "badencoder",
            "seed": seed,
            "target": meta["target"],
            "device": device.type,
            "models": {name: r.figures for name, r in results.items()},
        },
        layout.encoder_downstream_metrics(pair, seed),
    )
    for name, r in results.items():
        print(
            f"encoder {pair} seed {seed} {name}: CA {r.figures['ca']:.3f} ASR {r.figures['asr']:.3f} "
            f"in {r.figures['seconds']:.1f} s; re-injection ASR {r.figures['reinject_asr']:.3f}, "
            f"MIA loss AUC {r.figures['mia_loss_auc']:.3f}, PGD acc {r.figures['pgd_acc']:.3f}"
        )


if __name__ == "__main__":
    run_main(main)
