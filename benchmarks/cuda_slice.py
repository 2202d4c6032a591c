"""A real slice of the grid on one device, without DVC: prepare, clean, shadow, poison, train, defend
(FT and SFT, or the defenses named by --defenses) and sequela, by the pipeline's own stage scripts,
for one attack and one seed, then the training stage once more with the same seed to see whether it
repeats bit for bit.

Made for the GPU machine, which has torch but neither DVC nor a network: carry the repository and
the raw dataset, then

    PYTHONPATH=src python benchmarks/cuda_slice.py --dataset mnist --model resnet18 --out $OUT/slice.json

It writes its own params.yaml into a scratch workspace (the shipped one with the overrides below),
runs each stage there and records its wall time, the cells' CA / ASR / RA and the sequela figures.
On a CPU, `--smoke` runs the same slice on digits with one epoch of everything (a minute or two).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def workspace(params: dict, data_root: Path) -> Path:
    """A scratch copy of the stage scripts and library with `params` as its params.yaml."""
    scratch = Path(tempfile.mkdtemp(prefix="sequela-slice-"))
    for name in ("stages", "src"):
        shutil.copytree(ROOT / name, scratch / name, ignore=shutil.ignore_patterns("__pycache__"))
    params["data"]["root"] = str(data_root.resolve())
    (scratch / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return scratch


def run(scratch: Path, script: str, *args: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(scratch / "src"), "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    # stdout passes through as each stage prints it (a unit's line when it ends); stderr is kept for a failure
    result = subprocess.run(
        [sys.executable, f"stages/{script}.py", *args], cwd=scratch, env=env, stderr=subprocess.PIPE, text=True
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{script} {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return seconds


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--attack", default="badnets")
    parser.add_argument("--model", default="resnet18", help="the recipe's model for this run")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--defenses", nargs="+", default=["ft", "sft"], help="names from the defense registry")
    parser.add_argument("--data-root", default="data/raw")
    parser.add_argument("--out", default="slice.json")
    parser.add_argument("--smoke", action="store_true", help="digits, one epoch of everything (CPU check)")
    args = parser.parse_args()

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    if args.smoke:
        args.dataset, args.model, args.epochs = "digits", "small_cnn", 1
        params["defense"]["epochs"] = 1
        params["sequela"]["reinject"].update(draws=1, epochs=1)
        params["sequela"]["retune"]["epochs"] = 1
    recipe = params["recipe"][args.dataset]
    recipe = recipe[recipe["use"]] if "use" in recipe else recipe
    recipe["model"] = args.model
    if args.model == "resnet18":
        recipe.pop("width", None)
    if args.epochs:
        recipe["epochs"] = args.epochs
    params["grid"].update(datasets=[args.dataset], attacks=[args.attack], defenses=args.defenses, seeds=[args.seed])
    params["ablation"]["datasets"] = params["ablation"]["attacks"] = []
    params["transfer"]["upstream"] = params["transfer"]["attacks"] = params["encoder"]["pretrain"] = []
    scratch = workspace(params, Path(args.data_root))
    d, a, s = args.dataset, args.attack, str(args.seed)
    times = {
        "prepare": run(scratch, "prepare", "--dataset", d),
        "clean": run(scratch, "clean", "--dataset", d, "--seed", s),
        "shadow": run(scratch, "shadow", "--dataset", d, "--seed", s),
        "poison": run(scratch, "poison", "--dataset", d, "--attack", a, "--seed", s),
        "train": run(scratch, "train", "--dataset", d, "--attack", a, "--seed", s),
        "defend": run(scratch, "defend", "--dataset", d, "--attack", a, "--seed", s),
        "sequela": run(scratch, "measure", "--dataset", d, "--attack", a, "--seed", s),
    }
    model = scratch / f"data/standalone/{d}/seed{s}/backdoored/{a}/none/model.safetensors"
    cells = scratch / f"metrics/cells/standalone/{d}/seed{s}"
    first = digest(model), json.loads((cells / f"{a}-none.json").read_text())
    times["train again"] = run(scratch, "train", "--dataset", d, "--attack", a, "--seed", s)
    second = digest(model), json.loads((cells / f"{a}-none.json").read_text())
    report = {
        "dataset": d,
        "attack": a,
        "model": args.model,
        "seed": args.seed,
        "recipe": recipe,
        "stage_seconds": times,
        "backdoored": first[1],
        "defended": json.loads((cells / f"{a}-defenses.json").read_text())["defenses"],
        "sequela": json.loads((cells / f"{a}-sequela.json").read_text())["models"],
        "same_seed_same_weights": first[0] == second[0],
        "same_seed_ca_asr": [(first[1]["ca"], first[1]["asr"]), (second[1]["ca"], second[1]["asr"])],
    }
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps({k: report[k] for k in ("stage_seconds", "same_seed_same_weights", "same_seed_ca_asr")}, indent=1))
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
