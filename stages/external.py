"""external@<name>-<seed>: a model trained elsewhere, defended as a cell of the grid.

external/<name>/ holds the model (model.safetensors, self-describing: `sequela convert` makes one)
and its data, as `sequela defend` takes them: clean/ (the defender's data), and optionally test/,
triggered/ (true labels; params `external.targets.<name>` names the target), members/ and
non-members/, each an image folder or a .npz. Every defense of grid.defenses that needs only clean
data runs through the pipeline's own loop (src/sequela/external.py), seeded with the cell's seed:
the seed varies the defenses' draws, not the data, which are the folder's. Writes each defended
model (self-describing) and the cell's figures: CA, ASR, RA, the membership AUCs and seconds of the
model as given ("none") and after each defense.
"""

from sequela import external, models
from sequela.defenses.registry import CLEAN_DATA_ONLY
from sequela.pipeline import layout
from sequela.pipeline.records import write_cell
from sequela.training.recipe import Recipe
from stage import open_stage, run_main


def main() -> None:
    stage = open_stage(__doc__, "cell", "seed")
    args, params, device = stage.args, stage.params, stage.device
    external.check(stage.checker)
    e = params["external"]
    folder = layout.external_folder(args.cell)
    names = [d for d in params["grid"]["defenses"] if d in CLEAN_DATA_ONLY]
    paths, target = external.folder_roles(folder), e["targets"].get(args.cell)
    spec = models.read_spec(folder / "model.safetensors")
    external.check_request(spec, names, paths, target)
    splits, resized = external.read_roles(spec, paths, e["resize"])
    model, spec = external.load_model(folder / "model.safetensors", device)
    recipe = Recipe(
        model=spec["arch"],
        epochs=0,
        batch_size=e["batch_size"],
        lr=0.0,
        crop_padding=e["crop_padding"],
        flip=e["flip"],
        width=spec.get("width"),
    )
    out = layout.external_models(args.cell, args.seed)
    figures = external.defend(
        model,
        spec,
        splits,
        names,
        params["defense"],
        recipe,
        device,
        args.seed,
        target,
        lambda name, defended: models.save(defended, spec, out / name),
    )
    write_cell(
        {
            "paradigm": "external",
            "dataset": args.cell,
            "attack": "external",
            "seed": args.seed,
            "device": device.type,
            "resized": resized,
            "n_clean": len(splits["clean"]),
            "models": figures,
        },
        layout.external_metrics(args.cell, args.seed),
    )
    for name, f in figures.items():
        print(f"external {args.cell}-{name} seed {args.seed}: CA {f['ca']} ASR {f.get('asr')}", flush=True)


if __name__ == "__main__":
    run_main(main)
