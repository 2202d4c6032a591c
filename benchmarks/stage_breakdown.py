"""Where a stage's time goes: Python start-up and imports, the stage's own work, DVC's bookkeeping.

Run in a workspace where `dvc repro` has built the grid (so every stage's inputs exist and dvc.lock
is the full grid's):

    uv run python benchmarks/stage_breakdown.py [--repeat 3] [STAGE ...]

For each stage (default: the first cell of each kind in dvc.yaml) it times, in fresh processes:
- imports: the stage script's import statements alone (`python -c "<imports>"`);
- process: the stage's command run directly, without DVC (its outputs are overwritten with the same
  bytes: every stage is deterministic given its seed);
- dvc: `dvc repro --force --single-item STAGE`, which runs the same command and then hashes the
  outputs, stores them in the cache, writes the run-cache entry and rewrites dvc.lock.
It prints the medians and their differences: work = process - imports, dvc = dvc - process.
"""

from __future__ import annotations

import argparse
import ast
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def stage_commands() -> dict[str, str]:
    """{stage name: command} of every expanded stage, from `dvc stage list` and dvc.lock-free parsing."""
    out = subprocess.run(
        [sys.executable, "-m", "dvc", "stage", "list", "--name-only"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return {s.addressing: s.cmd for s in repo.index.stages if s.addressing in out and s.cmd}


def imports_of(cmd: str) -> str:
    script = ROOT / shlex.split(cmd)[1]
    tree = ast.parse(script.read_text())
    return "\n".join(ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)))


def timed(args: list[str], repeat: int, env: dict) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(args, cwd=ROOT, env=env, check=True, capture_output=True)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stages", nargs="*")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    commands = stage_commands()
    chosen = args.stages or list({name.split("@")[0]: name for name in reversed(list(commands))}.values())[::-1]
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'stages'}{os.pathsep}{ROOT / 'src'}",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    lock_lines = len((ROOT / "dvc.lock").read_text().splitlines()) if (ROOT / "dvc.lock").exists() else 0
    print(f"dvc.lock: {lock_lines} lines; medians of {args.repeat} runs, seconds")
    print(f"{'stage':44s} {'imports':>8s} {'work':>8s} {'dvc':>8s} {'total':>8s}")
    for name in chosen:
        cmd = commands[name]
        t_imports = timed([sys.executable, "-c", imports_of(cmd)], args.repeat, env)
        t_process = timed(["bash", "-c", cmd], args.repeat, env)
        t_dvc = timed([sys.executable, "-m", "dvc", "repro", "--force", "--single-item", name], args.repeat, env)
        print(
            f"{name:44s} {t_imports:8.2f} {t_process - t_imports:8.2f} {t_dvc - t_process:8.2f} {t_dvc:8.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
