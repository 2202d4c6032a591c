"""sequela study: run a named study and keep what it reports.

A study is a file `studies/<name>.yaml`: a `description` and `set`, the params.yaml keys it changes
(dotted, as `dvc exp run -S` takes them). `sequela study studies/<name>.yaml` checks every key
against params.yaml, then runs the pipeline with those values as a DVC experiment in a temporary
copy of the repository (`dvc exp run --temp`, `data/raw` copied in), so the workspace and its
params.yaml stay as they are and the cells the study shares with the default grid come from the
run-cache. It then copies the experiment's reports (tables, figures, metrics/summary.json,
metrics/headline.json) and the params.yaml it ran with into `reports/studies/<name>/`, which is
committed like every other report.

Every stage that finishes is pushed, outputs and run-cache, to a DVC remote outside the work tree
(cli.study_remote: --remote, by default a folder under the user's cache directory), and a rerun
first restores what that remote holds: a study stopped part-way, rerun with the same command in this
clone or a fresh one, computes only the stages that had not finished.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

from sequela.cli import study_remote

REPORTED = (
    "reports/tables",
    "reports/figures",
    "reports/plots",
    "metrics/summary.json",
    "metrics/headline.json",
    "params.yaml",
)


class StudyError(Exception):
    pass


def read_study(path: Path, params: dict) -> dict:
    """The study's `set` mapping, every key checked to name a key of params.yaml."""
    if not path.is_file():
        raise StudyError(f"{path}: no such study file")
    study = yaml.safe_load(path.read_text()) or {}
    changes = study.get("set")
    if not isinstance(changes, dict) or not changes:
        raise StudyError(f"{path}: set = {changes!r} is not allowed; allowed: a mapping of params.yaml keys to values")
    for key in changes:
        node = params
        for part in str(key).split("."):
            if not isinstance(node, dict) or part not in node:
                raise StudyError(f"{path}: set.{key} is not a key of params.yaml")
            node = node[part]
    return changes


def set_params(changes: dict) -> list[str]:
    """`-S key=value` arguments; values as YAML flow (JSON is valid YAML)."""
    return [arg for key, value in changes.items() for arg in ("-S", f"{key}={json.dumps(value)}")]


def git(*args: str, root: Path) -> bytes:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True).stdout


def experiment_ref(name: str, root: Path) -> str:
    refs = git("for-each-ref", "--format=%(refname)", "refs/exps", root=root).decode().split()
    mine = [r for r in refs if r.rsplit("/", 1)[-1] == name]
    if not mine:
        raise StudyError(f"the experiment {name} left no git ref (see dvc exp show)")
    return mine[-1]


def keep_reports(ref: str, out: Path, root: Path, run: dict | None = None) -> int:
    """Copy REPORTED from the experiment's commit `ref` into `out` (replaced whole), with `run`
    (the study's provenance) as run.json; returns the number of files."""
    files = git("ls-tree", "-r", "--name-only", ref, "--", *REPORTED, root=root).decode().splitlines()
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    for name in files:
        target = staging / name.removeprefix("reports/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(git("show", f"{ref}:{name}", root=root))
    if run is not None:
        staging.mkdir(parents=True, exist_ok=True)
        (staging / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)  # nothing half-written is left under the study's name
    return len(files)


def machine() -> str:
    """The CPU's model name and core count (and the GPU's, if torch sees one): figures and times depend on it."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    text = f"{cpu}, {os.cpu_count()} cores"
    try:
        import torch

        if torch.cuda.is_available():
            text += f", {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return text


def provenance(root: Path, seconds: float) -> dict:
    """What a results page cites: the commit the study ran at, when, where, with how many threads."""
    return {
        "commit": git("rev-parse", "--short", "HEAD", root=root).decode().strip(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": machine(),
        "threads": os.environ.get("OMP_NUM_THREADS", "torch default"),
        "seconds": round(seconds),
    }


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="sequela study", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("study", type=Path, help="studies/<name>.yaml")
    parser.add_argument(
        "--remote",
        help="the DVC remote's folder or URL that keeps finished stages "
        "(default: sequela/dvc-remote under the user's cache directory)",
    )
    parser.add_argument(
        "--push-every",
        type=float,
        default=20.0,
        help="seconds between checks for newly finished stages to push (default 20)",
    )
    args = parser.parse_args(argv)
    root = Path.cwd()
    try:
        if not (root / "dvc.yaml").is_file():
            raise StudyError("no dvc.yaml here; run it from the project root")
        changes = read_study(args.study, yaml.safe_load((root / "params.yaml").read_text()))
        if args.push_every <= 0:
            raise StudyError(f"--push-every {args.push_every} is not allowed; allowed: seconds above 0")
        name = args.study.stem
        try:
            url = study_remote.configure(root, args.remote)
            study_remote.restore(root)
        except RuntimeError as err:
            raise StudyError(str(err)) from None
        print(f"study {name}: finished stages are kept on {url}", flush=True)
        dvc = [sys.executable, "-m", "dvc"]
        subprocess.run([*dvc, "exp", "remove", name], cwd=root, capture_output=True)  # a rerun replaces it
        copy = ["--copy-paths", "data/raw"] if (root / "data/raw").exists() else []
        start = time.monotonic()
        with study_remote.Keeper(root, args.push_every) as keeper:
            run = subprocess.run([*dvc, "exp", "run", "--temp", "-n", name, *copy, *set_params(changes)], cwd=root)
        for failure in keeper.failures:
            print(f"warning: sequela study: a push to {url} failed: {failure}", file=sys.stderr)
        if run.returncode != 0:
            raise StudyError(f"dvc exp run failed (exit {run.returncode}); nothing was kept")
        n = keep_reports(
            experiment_ref(name, root),
            root / "reports/studies" / name,
            root,
            provenance(root, time.monotonic() - start),
        )
    except StudyError as err:
        print(f"error: sequela study: {err}", file=sys.stderr)
        return 2
    print(f"study {name}: {n} files in reports/studies/{name}/")
    return 0
