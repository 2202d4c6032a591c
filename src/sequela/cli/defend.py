"""sequela defend: defend a model trained elsewhere, and measure what the defenses leave.

    sequela defend model.safetensors --clean defender/ --test test/ \\
        --triggered test-triggered/ --target 0 --poisons poisons/ --members train/ --non-members holdout/ \\
        --defenses ft,sft --seeds 0,1,2 --out defended/

MODEL is a self-describing model file (`sequela convert` makes one from a state dict). The data are
image folders (<class>/<image>; class folders named by their index, 00, 01, ..., may leave classes
out) or .npz files with `x` and `y`; the class count is the model's. For each seed, a stratified
--val-share of the defender's clean data is set aside (drawn with the seed) and each defense runs
the pipeline's own code (defenses.apply, with the `defense` section of --params) on the rest. Under
--lr-rule validated (the default) each defense's learning rates are scaled by the largest of
--lr-scales whose model keeps its CA on those rows within 0.05 of the given model's (cli.lr_rule);
--lr-rule fixed runs the --params values as they are.

Written under --out once everything has run: <defense>/seed<seed>/model.safetensors (self-describing),
report.json, report.md and curves.png. The report gives, for the model as given ("none") and after
each defense, mean and sd over the seeds of: CA on --test, CA on the validation rows, ASR and RA on
--triggered (its images not labelled --target, with their true labels), P-ASR (the retuning attack
with --poisons), membership AUCs (members vs non-members) and seconds; a warning for each defense
whose validation CA falls more than 0.05 below the given model's (a collapse); each defense's
settings (rule, factor kept, lr, schedule, epochs, steps) and the factors the rule tried; and the
per-epoch CA and ASR curves.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from sequela.datasets.splits import Split
from sequela.pipeline.errors import StageError

PREAMBLE = "error: sequela defend: "
ROLES = ("clean", "test", "triggered", "members", "non_members", "poisons")


def defense_lines() -> str:
    """One line per defense `sequela defend` accepts, from the registry."""
    from sequela.cli.own_report import describe
    from sequela.defenses.registry import CLEAN_DATA_ONLY

    return "defenses (--defenses, comma-separated):\n" + "\n".join(
        f"  {name}: {describe(name)}" for name in CLEAN_DATA_ONLY
    )


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="sequela defend",
        description=__doc__,
        epilog=defense_lines(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", type=Path, help="a self-describing .safetensors model file")
    p.add_argument("--clean", type=Path, required=True, help="the defender's clean data")
    p.add_argument("--test", type=Path, help="clean test data, for CA")
    p.add_argument("--triggered", type=Path, help="triggered test images with their true labels, for ASR")
    p.add_argument("--target", type=int, help="the backdoor's target class (with --triggered)")
    p.add_argument("--poisons", type=Path, help="poisoned training images (trigger on, labelled --target), for P-ASR")
    p.add_argument("--members", type=Path, help="the model's training images, for the membership AUCs")
    p.add_argument("--non-members", type=Path, help="images it never saw, of the same distribution")
    p.add_argument("--defenses", default="ft,sft", help="comma-separated; the list below")
    p.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="its `defense` section sets each defense, `sequela.retune` the retuning attack",
    )
    p.add_argument("--batch-size", type=int, default=128, help="the defender's batch, where defense.batch_size is null")
    p.add_argument("--crop-padding", type=int, default=4, help="random-crop padding of the defender's augmentation")
    p.add_argument("--flip", action="store_true", help="random horizontal flips in the defender's augmentation")
    p.add_argument(
        "--resize", action="store_true", help="resize images to the model's input size (stated in the report)"
    )
    p.add_argument(
        "--val-share",
        type=float,
        default=0.1,
        help="of the clean data, set aside per seed for the lr rule and the collapse check (0: none)",
    )
    p.add_argument(
        "--lr-rule",
        default="validated",
        help="validated: each defense's lrs scaled by the largest --lr-scales factor that keeps "
        "validation CA within 0.05 of the given model's; fixed: the --params values as they are",
    )
    p.add_argument(
        "--lr-scales", default="1,0.3,0.1,0.03,0.01", help="the factors the validated rule tries, from the largest down"
    )
    p.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2 (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    return p.parse_args(argv)


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise StageError(f"--seeds {text!r} is not allowed; allowed: distinct integers >= 0, comma-separated (0,1,2)")
    return seeds


def check_out(out: Path, force: bool, option: str = "--out") -> None:
    """An existing output is replaced only when asked: it may hold the results of an earlier run."""
    if out.exists() and not force:
        raise StageError(f"{option} {out} exists; allowed: a path that does not exist, or --force to replace it")


@dataclass
class Inputs:
    spec: dict
    settings: dict  # params.yaml's `defense`
    rule: object  # lr_rule.Rule
    retune: dict | None  # params.yaml's `sequela.retune`, where --poisons is given
    names: list[str]
    seeds: list[int]
    splits: dict  # role -> Split, at the model's input size
    resized: list[str]


def read_roles(spec: dict, paths: dict[str, Path | None], resize: bool) -> tuple[dict[str, Split], list[str]]:
    """Each given role's images at the model's input shape, labels checked against the model's
    classes, and the roles that had to be resized."""
    from sequela import folders

    splits, resized = {}, []
    for role, path in paths.items():
        if path is None:
            continue
        split, _ = folders.read_images(path, spec["in_channels"], spec["num_classes"])
        splits[role], was_resized = folders.fit_size(split, spec["input_shape"], resize, str(path))
        if was_resized:
            resized.append(role)
    return splits, resized


def val_rows(clean: Split, share: float, seed: int) -> torch.Tensor:
    """The validation rows of one seed: a stratified `share` of the clean data, at least one row of
    each class that has two or more, and never a class's last row (the defenses train on it)."""
    from sequela.folders import stratified_rows

    if share == 0:
        return torch.empty(0, dtype=torch.long)
    return stratified_rows(clean.y, share, seed, leave=1)


def train_count(clean: Split, share: float, seed: int) -> int:
    return len(clean) - len(val_rows(clean, share, seed))


def check_inputs(args: argparse.Namespace) -> Inputs:
    """Every input checked, and the data read, before any defense runs."""
    from sequela import external
    from sequela.defenses.registry import DEFENSES, check_shared
    from sequela.measures import retune
    from sequela.pipeline.checker import Checker
    from sequela.pipeline.config import read_params

    check_out(args.out, args.force)
    seeds = parse_seeds(args.seeds)
    if not 0 <= args.val_share < 1:
        raise StageError(f"--val-share {args.val_share} is not allowed; allowed: 0 (no collapse check) to below 1")
    rule = check_rule(args)
    spec = external.read_spec(args.model)
    names = [n for n in args.defenses.split(",") if n]
    paths = {
        "clean": args.clean,
        "test": args.test,
        "triggered": args.triggered,
        "members": args.members,
        "non_members": args.non_members,
        "poisons": args.poisons,
    }
    external.check_request(spec, names, paths, args.target)
    if args.poisons is not None and args.triggered is None:
        raise StageError("--poisons needs --triggered and --target: P-ASR is measured on the triggered images")
    if not args.params.is_file():
        raise StageError(f"--params {args.params}: no such file (its `defense` section sets each defense)")
    params = read_params(args.params)
    checker = Checker(params)
    check_shared(checker)
    for name in names:
        DEFENSES[name].check(checker, f"defense.{name}")
    if args.poisons is not None:
        retune.check(checker)
    splits, resized = read_roles(spec, paths, args.resize)
    retune_settings = params["sequela"]["retune"] if args.poisons is not None else None
    if retune_settings is not None:
        check_poisons(splits, retune_settings, args.target, args.val_share, seeds)
    return Inputs(spec, params["defense"], rule, retune_settings, names, seeds, splits, resized)


def check_rule(args: argparse.Namespace):
    """The learning-rate rule (cli.lr_rule) of --lr-rule and --lr-scales."""
    from sequela.cli import lr_rule
    from sequela.cli.own_report import COLLAPSE_DROP

    if args.lr_rule not in lr_rule.RULES:
        raise StageError(f"--lr-rule {args.lr_rule!r} is not allowed; allowed: {', '.join(lr_rule.RULES)}")
    try:
        scales = lr_rule.parse_scales(args.lr_scales)
    except ValueError as err:
        raise StageError(f"--lr-scales {args.lr_scales!r} is not allowed; allowed: {err}") from None
    if args.lr_rule == "validated" and args.val_share == 0:
        raise StageError(
            "--lr-rule validated with --val-share 0 is not allowed; allowed: a --val-share above 0 "
            "(the rule chooses on those rows), or --lr-rule fixed"
        )
    return lr_rule.Rule(args.lr_rule, scales, COLLAPSE_DROP)


def check_poisons(splits: dict, settings: dict, target: int, share: float, seeds: list[int]) -> None:
    """The poisons carry the target label, and there are enough of them for every seed's set."""
    from sequela.measures.retune import poison_count

    poisons = splits["poisons"]
    wrong = int((poisons.y != target).sum())
    if wrong:
        raise StageError(
            f"--poisons: {wrong} images labelled other than --target {target}; allowed: poisons "
            "labelled with the target (a folder's images under the target's class folder)"
        )
    needed = max(poison_count(train_count(splits["clean"], share, s), settings["share"]) for s in seeds)
    if len(poisons) < needed:
        raise StageError(
            f"--poisons: {len(poisons)} images; the retuning set needs {needed} "
            f"(sequela.retune.share {settings['share']} of the defender's training rows, at least one)"
        )


class GivenTrigger:
    """The trigger of images that already carry it: `apply` leaves them as they are, so the
    pipeline's ASR code measures the --triggered images themselves."""

    @staticmethod
    def apply(x: torch.Tensor) -> torch.Tensor:
        return x


@dataclass
class Job:
    """What every unit of one seed reads."""

    cell: object  # external.FolderCell
    on: dict[str, Split]  # the roles on the device
    val: Split | None  # the validation rows, on the device
    train: Split  # the rows the defenses train on
    retune: dict | None
    rule: object  # lr_rule.Rule
    batch: int  # the defender's batch
    keep: Callable[[str, torch.nn.Module], None]
    given_val_ca: float | None  # the given model's CA on `val`, read by the lr rule


def unit(job: Job, name: str) -> dict:
    """Figures and per-epoch curve of the model as given ("none") or after defense `name`."""
    from sequela.cli.lr_rule import defend_with
    from sequela.defenses.apply import apply_defense
    from sequela.defenses.registry import DEFENSES
    from sequela.measures.membership import metric_attacks, metric_figures
    from sequela.metrics import clean_accuracy

    cell = job.cell
    choice = None
    if name == "none":
        model, curve = cell.backdoored, []
        figures = cell.evaluate(model, cell.test)
    else:
        outcome, choice = defend_with(
            job.rule,
            name,
            cell,
            lambda c: apply_defense(name, DEFENSES[name].run, c),
            lambda m: clean_accuracy(m, job.val),
            job.given_val_ca,
        )
        model, curve = outcome.model, outcome.curve
        job.keep(name, model)
        # the defender's data is given whole: the pipeline's clean share does not apply
        figures = {k: v for k, v in outcome.figures.items() if k != "clean_fraction"}
        figures["lr_scale"] = choice["scale"]
    figures["val_ca"] = clean_accuracy(model, job.val) if job.val is not None else None
    if "members" in job.on:
        figures.update(metric_figures(metric_attacks(model, job.on["members"], job.on["non_members"])))
    retune_curve = None
    if job.retune is not None:
        figures["p_asr"], retune_curve = retuned(model, job)
    return {"figures": figures, "curve": curve, "retune_curve": retune_curve, "lr_choice": choice}


def retuned(model: torch.nn.Module, job: Job) -> tuple[float, list[float]]:
    """P-ASR: the pipeline's retuning attack (measures.retune.Retuning) on the defender's training
    rows with their first k swapped for k of the given poisons (a seeded draw), ASR measured on the
    --triggered images. Its CA after is left out: Retuning measures it on the split it is given,
    here the triggered one."""
    from sequela.engine.batches import Augment
    from sequela.measures.retune import Retuning

    cell = job.cell
    r = Retuning.from_settings(job.retune, len(job.train), job.batch, cell.seed)
    poisons = job.on["poisons"].to("cpu")
    chosen = torch.randperm(len(poisons), generator=torch.Generator().manual_seed(cell.seed))[: r.k]
    x, y = job.train.x.clone(), job.train.y.clone()
    x[: r.k], y[: r.k] = poisons.x[chosen], cell.target
    plain = torch.zeros(len(y), dtype=torch.bool)
    plain[: r.k] = True  # fed as the attacker ships them, without the defender's augmentation
    augment = Augment(cell.recipe.crop_padding, cell.recipe.flip)
    out = r.run(model, Split(x, y), plain, cell.triggered, GivenTrigger(), cell.target, augment)
    return out["p_asr"], out["retune_curve"]


def defend_seed(model, spec: dict, inputs: Inputs, args, device: torch.device, seed: int, staging: Path) -> dict:
    """Units "none" and each defense for one seed: {name: {"figures", "curve"}}."""
    from functools import partial

    from sequela import external, models
    from sequela.metrics import clean_accuracy
    from sequela.training.recipe import Recipe
    from sequela.workers import run_units

    clean = inputs.splits["clean"]
    held = val_rows(clean, args.val_share, seed)
    rest = torch.ones(len(clean), dtype=torch.bool)
    rest[held] = False
    train = clean.subset(rest.nonzero().flatten())
    val = clean.subset(held).to(device) if len(held) else None
    on = {k: v.to(device) for k, v in inputs.splits.items()}
    recipe = Recipe(
        model=spec["arch"],
        epochs=0,
        batch_size=args.batch_size,
        lr=0.0,
        crop_padding=args.crop_padding,
        flip=args.flip,
        width=spec.get("width"),
    )
    cell = external.FolderCell(
        backdoored=model,
        spec=spec,
        clean=train,
        train=train,
        poisoned=torch.empty(0, dtype=torch.long),
        attack=None,
        target=args.target or 0,
        poison_rate=0.0,
        recipe=recipe,
        device=device,
        settings=inputs.settings,
        seed=seed,
        test=on.get("test"),
        triggered=on.get("triggered"),
        # the per-epoch CA on the validation rows where there are some, so no decision reads the test set
        curve_test=val if val is not None else on.get("test"),
    )

    def keep(name: str, defended: torch.nn.Module) -> None:
        models.save_file(defended, spec, staging / name / f"seed{seed}" / "model.safetensors")

    given_val_ca = clean_accuracy(model, val) if val is not None else None
    job = Job(
        cell,
        on,
        val,
        train,
        inputs.retune,
        inputs.rule,
        inputs.settings["batch_size"] or args.batch_size,
        keep,
        given_val_ca,
    )
    units = ["none", *inputs.names]
    found = dict(zip(units, run_units(partial(unit, job), units, device)))
    return {"n_train": len(train), "n_val": len(held), **found}


def run(args: argparse.Namespace, inputs: Inputs) -> dict:
    from sequela import external
    from sequela.cli.own_report import build_report, write_report
    from sequela.engine.device import pick_device

    device = pick_device(args.device)
    model, spec = external.load_model(args.model, device)
    staging = args.out.with_name(args.out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    runs = {seed: defend_seed(model, spec, inputs, args, device, seed, staging) for seed in inputs.seeds}
    report = build_report(runs, inputs, args, device.type)
    write_report(report, staging)
    if args.out.exists():  # --force, checked before any work
        shutil.rmtree(args.out) if args.out.is_dir() else args.out.unlink()
    staging.rename(args.out)  # nothing half-written under --out
    return report


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
