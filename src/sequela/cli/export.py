"""sequela export: one backdoored model of the grid, and its cell's data, as a model trained
elsewhere would arrive: a plain PyTorch state dict and image folders.

    sequela export --dataset gtsrb --attack badnets --seed 0 --out export/gtsrb-badnets-0

Writes under --out: weights.pt (the backdoored model's state dict, torch.save), and image folders
(<class>/<name>.png, classes named 00, 01, ...) with the data the pipeline's cells use for that
model: clean/ (the defender's clean subset, defense.clean_fraction of the training split drawn with
the seed), test/ (the clean test split), triggered/ (the test images carrying the trigger, true
labels; rounded to 8 bits as PNG stores them), members/ and non-members/ (the rows the measure stage
scores for membership: its "all" group against the holdout). Each image is named by its row, so the
folder reader returns the pipeline's row order. It prints the `sequela convert` and `sequela defend`
commands that take them back in; the defend command gives `--val-share 0 --lr-rule fixed`, so that
the defenses train on every defender row at the grid's settings, as the cell's did, and give back
its figures (drop both to choose the learning rate on validation rows and check for a collapse). An
existing --out is refused unless --force is given. Run it from the project root after `dvc repro`
built the cell.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from sequela.pipeline.errors import StageError


def export(dataset: str, attack_name: str, seed: int, out: Path) -> dict:
    import torch

    from sequela.folders import write_folder

    sys.path.insert(0, str(Path.cwd() / "stages"))  # where the cells live is the stage scripts' knowledge
    from sequela import models
    from sequela.attacks.registry import load_artefact
    from sequela.datasets import splits
    from sequela.measures.membership import member_groups
    from sequela.pipeline import layout
    from sequela.pipeline.config import read_params
    from sequela.training.recipe import Recipe

    params = read_params("params.yaml")
    model_dir = layout.model(dataset, attack_name, seed)
    if not (model_dir / "model.safetensors").is_file():
        raise StageError(
            f"{model_dir}: no backdoored model; build it first: uv run dvc repro train@{dataset}-{attack_name}-{seed}"
        )
    ds, _ = splits.load_prepared(layout.prepared(dataset))
    attack, poisoned, meta = load_artefact(layout.poison(dataset, attack_name, seed), "cpu")
    model, spec = models.load(model_dir)
    defender = splits.defender_rows(ds.train, params["defense"]["clean_fraction"], seed)
    groups = member_groups(len(ds.train), len(ds.holdout), seed, poisoned, defender, groups=ds.train.groups)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    torch.save(model.state_dict(), staging / "weights.pt")
    triggered = (attack.apply(ds.test.x.float() / 255.0) * 255.0).round().clamp(0, 255).to(torch.uint8)
    for role, (x, y) in {
        "clean": (ds.train.x[defender], ds.train.y[defender]),
        "test": (ds.test.x, ds.test.y),
        "triggered": (triggered, ds.test.y),
        "members": (ds.train.x[groups["all"]], ds.train.y[groups["all"]]),
        "non-members": (ds.holdout.x, ds.holdout.y),
    }.items():
        write_folder(splits.Split(x, y), staging / role)
    if out.exists():  # --force, checked before any work
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    staging.rename(out)
    return {"spec": spec, "target": meta["target"], "recipe": Recipe.from_params(params, dataset)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="sequela export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--attack", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    args = parser.parse_args(argv)
    try:
        from sequela.cli.defend import check_out

        check_out(args.out, args.force)
        if not Path("dvc.yaml").is_file():
            raise StageError("no dvc.yaml here; run it from the project root")
        got = export(args.dataset, args.attack, args.seed, args.out)
    except StageError as err:
        print(f"error: sequela export: {err}", file=sys.stderr)
        return 2
    for line in commands(got, args.out, args.seed):
        print(line)
    return 0


def commands(got: dict, o: Path, seed: int) -> list[str]:
    """The convert and defend commands that take an export back in, with the cell's own recipe."""
    s, r = got["spec"], got["recipe"]
    width = f" --width {s['width']}" if s.get("width") is not None else ""
    return [
        f"uv run sequela convert {o}/weights.pt --arch {s['arch']} --num-classes {s['num_classes']} "
        f"--input-shape {','.join(map(str, s['input_shape']))}{width} --mean {','.join(map(str, s['mean']))} "
        f"--std {','.join(map(str, s['std']))} --out {o}/model.safetensors",
        f"uv run sequela defend {o}/model.safetensors --clean {o}/clean --test {o}/test --triggered {o}/triggered "
        f"--target {got['target']} --members {o}/members --non-members {o}/non-members --defenses ft,sft "
        f"--batch-size {r.batch_size} --crop-padding {r.crop_padding}{' --flip' if r.flip else ''} "
        f"--seeds {seed} --val-share 0 --lr-rule fixed --out {o}/defended",
    ]
