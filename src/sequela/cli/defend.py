"""sequela defend: defend a model trained elsewhere, and measure what the defenses leave.

    sequela defend model.safetensors --clean defender/ --test test/ \\
        --triggered test-triggered/ --target 0 --members train/ --non-members holdout/ \\
        --defenses ft,sft --out defended/

MODEL is a self-describing model file (`sequela convert` makes one from a state dict). The folders
are image folders (<class>/<image>, classes in sorted order, torchvision's ImageFolder layout) or
.npz files with `x` and `y`. Each defense runs the pipeline's own code (defenses.apply, with the
`defense` section of --params) on the defender's clean data, from the same seed. Written under
--out once everything has run: <defense>/model.safetensors (self-describing), report.json and
report.md with CA (on --test), ASR and RA (on --triggered: the images not labelled --target, with
their true labels), membership AUCs (members vs non-members, the pipeline's metric attacks) and
seconds, for the model as given ("none") and after each defense.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from sequela.errors import StageError

PREAMBLE = "error: sequela defend: "


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sequela defend", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="a self-describing .safetensors model file")
    p.add_argument("--clean", type=Path, required=True, help="the defender's clean data")
    p.add_argument("--test", type=Path, help="clean test data, for CA")
    p.add_argument("--triggered", type=Path, help="triggered test images with their true labels, for ASR")
    p.add_argument("--target", type=int, help="the backdoor's target class (with --triggered)")
    p.add_argument("--members", type=Path, help="the model's training images, for the membership AUCs")
    p.add_argument("--non-members", type=Path, help="images it never saw, of the same distribution")
    p.add_argument("--defenses", default="ft,sft", help="comma-separated; defenses that need only clean data")
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="its `defense` section sets each defense")
    p.add_argument("--batch-size", type=int, default=128, help="the defender's batch, where defense.batch_size is null")
    p.add_argument("--crop-padding", type=int, default=4, help="random-crop padding of the defender's augmentation")
    p.add_argument("--flip", action="store_true", help="random horizontal flips in the defender's augmentation")
    p.add_argument("--resize", action="store_true", help="resize images to the model's input size (stated in the report)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args(argv)


@dataclass
class Inputs:
    spec: dict
    settings: dict
    names: list[str]
    splits: dict  # role -> Split, at the model's input size
    resized: list[str]


def check_inputs(args: argparse.Namespace) -> Inputs:
    """Every input checked, and the data read, before any defense runs."""
    from sequela import external
    from sequela.checker import Checker
    from sequela.config import read_params
    from sequela.defenses.registry import DEFENSES, check_shared

    spec = external.read_spec(args.model)
    names = [n for n in args.defenses.split(",") if n]
    paths = {"clean": args.clean, "test": args.test, "triggered": args.triggered, "members": args.members,
             "non_members": args.non_members}
    external.check_request(spec, names, paths, args.target)
    if not args.params.is_file():
        raise StageError(f"--params {args.params}: no such file (its `defense` section sets each defense)")
    params = read_params(args.params)
    checker = Checker(params)
    check_shared(checker)
    for name in names:
        DEFENSES[name].check(checker, f"defense.{name}")
    splits, resized = external.read_roles(spec, paths, args.resize)
    return Inputs(spec, params["defense"], names, splits, resized)


def run(args: argparse.Namespace, inputs: Inputs) -> dict:
    from sequela import external, models
    from sequela.engine import pick_device
    from sequela.recipe import Recipe

    device = pick_device(args.device)
    model, spec = external.load_model(args.model, device)
    recipe = Recipe(model=spec["arch"], epochs=0, batch_size=args.batch_size, lr=0.0,
                    crop_padding=args.crop_padding, flip=args.flip, width=spec.get("width"))
    staging = args.out.with_name(args.out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)

    def keep(name: str, defended) -> None:
        models.save_file(defended, spec, staging / name / "model.safetensors")

    figures = external.defend(model, spec, inputs.splits, inputs.names, inputs.settings, recipe, device, args.seed,
                              args.target, keep)
    report = {"model": str(args.model), "spec": spec, "seed": args.seed, "device": device.type,
              "resized": inputs.resized, "n_clean": len(inputs.splits["clean"]), "models": figures}
    write_report(report, staging)
    shutil.rmtree(args.out, ignore_errors=True)
    staging.rename(args.out)  # nothing half-written under --out
    return report


def write_report(report: dict, out: Path) -> None:
    """report.json (fractions to three decimals, as the pipeline's cells keep them) and report.md."""
    from sequela.records import rounded

    report = {**report, "models": rounded(report["models"])}
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    columns = ["ca", "asr", "ra", "mia_loss_auc", "seconds"]
    lines = [f"# sequela defend: {report['model']}", "",
             f"Seed {report['seed']}, device {report['device']}, {report['n_clean']} clean images for the defender."]
    if report["resized"]:
        lines.append(f"Resized to the model's input size: {', '.join(report['resized'])}.")
    lines += ["", "| model | " + " | ".join(columns) + " |", "|:--|" + "--:|" * len(columns)]
    for name, f in report["models"].items():
        cells = [("" if f.get(c) is None else f"{f[c]:.3f}" if c != "seconds" else f"{f[c]:.1f}") for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    (out / "report.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str]) -> int:
    args = parse(argv)
    try:
        inputs = check_inputs(args)
        run(args, inputs)
    except StageError as err:
        shutil.rmtree(args.out.with_name(args.out.name + ".partial"), ignore_errors=True)
        print(PREAMBLE + str(err), file=sys.stderr)
        return 2
    print(f"{args.out}/report.md")
    return 0
